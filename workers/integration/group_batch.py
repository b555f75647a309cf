"""A group's durable members: their records written in one round trip, then their messages.

Celery's ``group`` publishes its members one by one (``group._apply_tasks``),
and each durable member's ``apply_async`` would wait for its own record
(``enqueue``) before its message: one blocking round trip per member. The
caller only sees ``group.apply_async`` return, so while a group is built
(:func:`enqueue_batch`, entered by the ``group`` patch in
``workers.integration.patches.group``) each member's first message is held.
When the group is built, :meth:`GroupBatch.flush` writes every record
pipelined (``Store.enqueue_many``: a round trip per 1,000), then publishes the
messages in the group's order. Each record is still written before its message goes out, and the
group's ``apply_async`` returns only when all are.

What changes against one-by-one: a group whose records Redis does not take
publishes none of its members (EnqueueError, the records written are removed
again), where one by one the members before the refused one were out already.
Celery's ``task-sent`` event and ``after_task_publish`` signal of a member fire
when Celery hands over the message, a moment before the group's flush sends it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol, cast

from kombu.exceptions import EncodeError
from redis import RedisError

from workers.core.outcomes import Enqueued, NewJob
from workers.core.store import Store

_current: ContextVar[GroupBatch | None] = ContextVar("durable_group_batch", default=None)


class FirstMessage(Protocol):
    """What the batch needs of a held first message (workers.integration.enqueue's)."""

    @property
    def store(self) -> Store: ...

    def new_job(self, body: Any, publish: dict[str, Any]) -> NewJob: ...

    def written(self, answer: Enqueued | RedisError, job: NewJob) -> bool: ...

    def send(self, body: Any, publish: dict[str, Any]) -> Any: ...

    def forget(self) -> None: ...

    def not_json(self, body: Any) -> Exception: ...


def current_batch() -> GroupBatch | None:
    """The batch of the group being built here, if any."""
    return _current.get()


@contextmanager
def enqueue_batch() -> Iterator[GroupBatch]:
    """Hold the first messages of durable jobs enqueued inside; flush at the end.

    Nested (a group inside a group, a chain's group): the outermost flushes. If the
    block raises, nothing held was written or published.
    """
    outer = _current.get()
    if outer is not None:
        yield outer
        return
    batch = GroupBatch()
    token = _current.set(batch)
    try:
        yield batch
    finally:
        _current.reset(token)
    batch.flush()


class GroupBatch:
    """The held first messages of one group's durable members, in the group's order."""

    def __init__(self) -> None:
        self._held: list[tuple[FirstMessage, Any, dict[str, Any]]] = []

    def add(self, first: FirstMessage, body: Any, publish: dict[str, Any]) -> None:
        self._held.append((first, body, publish))

    def flush(self) -> None:
        """Write every record (one round trip per 1,000), then publish the messages.

        Raises EncodeError / EnqueueError before anything is written for a member
        that cannot be stored, EnqueueError (the records written removed again)
        when Redis does not take one, and a publish's own error (the records of
        the members not yet published removed) when the broker refuses one.
        """
        held, self._held = self._held, []
        if not held:
            return
        jobs = []
        for first, body, publish in held:
            try:
                jobs.append(first.new_job(body, publish))
            except EncodeError as exc:
                raise first.not_json(body) from exc
        due_now: list[bool] = []
        refused: BaseException | None = None
        for (first, _, _), answer, job in zip(held, self._write(held, jobs), jobs, strict=True):
            try:
                due_now.append(first.written(answer, job))
            except BaseException as exc:
                # Every answer is taken first, so each record written is known
                # (created_ms) and removed again below.
                refused = refused or exc
                due_now.append(False)
        if refused is not None:
            self._forget(first for first, _, _ in held)
            raise refused
        for at, (first, body, publish) in enumerate(held):
            if not due_now[at]:
                continue  # only the due set holds it: a sweeper publishes it when due
            try:
                first.send(body, publish)
            except BaseException as exc:
                self._forget(first for first, _, _ in held[at:])
                if isinstance(exc, EncodeError):
                    raise first.not_json(body) from exc
                raise

    @staticmethod
    def _write(held: list[tuple[FirstMessage, Any, dict[str, Any]]],
               jobs: list[NewJob]) -> list[Enqueued | RedisError]:  # fmt: skip
        """``enqueue_many`` per store (one per app in the group; usually one)."""
        answers: list[Enqueued | RedisError | None] = [None] * len(jobs)
        by_store: dict[int, list[int]] = {}
        for at, (first, _, _) in enumerate(held):
            by_store.setdefault(id(first.store), []).append(at)
        for indexes in by_store.values():
            store = held[indexes[0]][0].store
            for at, answer in zip(indexes, store.enqueue_many([jobs[i] for i in indexes]),
                                  strict=True):  # fmt: skip
                answers[at] = answer
        return cast(list[Enqueued | RedisError], answers)  # every index was filled

    @staticmethod
    def _forget(members: Iterable[FirstMessage]) -> None:
        for first in members:
            first.forget()
