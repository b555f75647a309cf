"""Durable from enqueue: the job's record is written before its first message goes out.

``DurableTask.apply_async`` hands Celery a producer that wraps the real one
(:class:`FirstMessage`). Celery builds the message as always (routes,
canvas, per-call options, stamps), and when it publishes the job's message
the wrapper first writes the record (``enqueue``): arguments and the
message's options, read from what is really on the wire, kept once for every
attempt. When the broker is the same Redis, the script that writes the record
pushes the message too (workers/integration/record_push.py). If Redis cannot
take the record, the exception stops the publish: nothing goes out. A first
countdown longer than ``DURABLE_MAX_COUNTDOWN`` is not published at all: the
due set holds it and a sweeper publishes it when due.

:func:`options_from_message` and ``publish.send_options`` are the two halves
of keeping a message whole: what is stored from the first message, and how a
later attempt's message is built from it (docs/DESIGN.md lists the fields).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import redis
from kombu.exceptions import EncodeError
from kombu.utils import json as kombu_json

from workers.core.errors import EnqueueError, NotJSONSerializable
from workers.core.outcomes import Enqueued, NewJob, Payload
from workers.core.refusals import refusal_reason
from workers.core.runtime import Runtime
from workers.core.settings import redact_url
from workers.core.store import Store
from workers.integration.group_batch import current_batch
from workers.integration.publish import ATTEMPT_HEADER
from workers.integration.record_push import PendingRecord, carries, publish_with_record

log = logging.getLogger("workers.jobs")

# Headers Celery writes itself (protocol 2, celery/app/amqp.py as_task_v2), or
# that this layer sets per attempt: every other header is the caller's, kept.
CELERY_HEADERS = frozenset({
    "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries",
    "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result",
    "replaced_task_nesting", "stamped_headers", "stamps", ATTEMPT_HEADER,
})  # fmt: skip

# Keyword arguments of kombu's Producer.publish that are not message properties.
PUBLISH_ARGUMENTS = frozenset({
    "exchange", "routing_key", "serializer", "compression", "retry", "retry_policy",
    "delivery_mode", "declare", "headers", "timeout", "confirm_timeout", "content_type",
    "content_encoding", "mandatory", "immediate",
})  # fmt: skip

MAX_OPTIONS_BYTES = 256 * 1024
"""Largest stored message options (a long chain or a chord body can be big)."""


def _name(thing: Any) -> str:
    return str(getattr(thing, "name", thing) or "")


def queue_of(publish: dict[str, Any]) -> str:
    """The queue a published message was routed to, as Celery routed it."""
    declare = publish.get("declare") or []
    for queue in declare:
        if _name(queue):
            return _name(queue)
    if not _name(publish.get("exchange")):
        return str(publish.get("routing_key") or "")
    return ""


def unread_reply_to(app: Any) -> str | None:
    """The ``reply_to`` that Celery puts on every message of ``app`` when nothing reads it.

    Celery sets ``reply_to`` to the sending thread's ``app.thread_oid`` on every
    task message, but only an RPC result backend (``rpc://``) sends a result there.
    With any other backend that value is not stored, so a plain job's record
    keeps no options at all (and its enqueue writes one field less).
    """
    from celery.backends.rpc import RPCBackend

    return None if isinstance(app.backend, RPCBackend) else str(app.thread_oid)


def options_from_message(
    body: Any, publish: dict[str, Any], unread: str | None = None
) -> dict[str, Any]:
    """What must go out again with every attempt, read from the first message.

    Only what is set is kept, so a plain job stores nothing here: not the
    defaults Celery writes into every message (``replaced_task_nesting`` 0), and
    not ``reply_to`` when it is ``unread`` (what :func:`unread_reply_to` names).
    A ``reply_to`` the caller chose is always kept.
    """
    headers: dict[str, Any] = dict(publish.get("headers") or {})
    _args, _kwargs, embed = body if isinstance(body, (list, tuple)) else ((), {}, {})
    stamped = list(headers.get("stamped_headers") or [])
    options: dict[str, Any] = {}

    def keep(name: str, value: Any) -> None:
        if value not in (None, "", [], {}):
            options[name] = value

    keep("root_id", headers.get("root_id") if headers.get("root_id") != headers.get("id") else None)
    keep("parent_id", headers.get("parent_id"))
    keep("group_id", headers.get("group"))
    keep("group_index", headers.get("group_index"))
    keep("shadow", headers.get("shadow"))
    hard, soft = [*(headers.get("timelimit") or []), None, None][:2]
    keep("time_limit", hard)
    keep("soft_time_limit", soft)
    if headers.get("ignore_result"):
        options["ignore_result"] = True
    keep("replaced_task_nesting", headers.get("replaced_task_nesting") or None)
    if stamped:
        options["stamped_headers"] = stamped
        keep("stamps", headers.get("stamps"))
    user = {
        name: value for name, value in headers.items()
        if name not in CELERY_HEADERS and name not in stamped
    }  # fmt: skip
    keep("headers", user)
    embed = embed or {}
    keep("link", embed.get("callbacks"))
    keep("link_error", embed.get("errbacks"))
    keep("chain", embed.get("chain"))
    keep("chord", embed.get("chord"))
    properties = {k: v for k, v in publish.items() if k not in PUBLISH_ARGUMENTS}
    keep("priority", properties.get("priority"))
    if properties.get("reply_to") != unread:
        keep("reply_to", properties.get("reply_to"))
    if _name(publish.get("exchange")):
        # A named exchange (topic, fanout): route as the first message was.
        options["exchange"] = _name(publish.get("exchange"))
        keep("routing_key", publish.get("routing_key"))
    return options


def _countdown_ms(headers: dict[str, Any]) -> int:
    eta = headers.get("eta")
    if not eta:
        return 0
    moment = datetime.fromisoformat(str(eta))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0, int((moment - datetime.now(timezone.utc)).total_seconds() * 1000))


def not_json_error(task: str, args: Any, kwargs: Any) -> NotJSONSerializable:
    """Name the first argument of ``task`` that JSON cannot carry."""
    named = [(f"argument {i}", value) for i, value in enumerate(args or ())]
    named += [(f"keyword argument {key!r}", value) for key, value in (kwargs or {}).items()]
    for label, value in named:
        try:
            kombu_json.dumps(value)
        except (TypeError, ValueError) as exc:
            return NotJSONSerializable(
                f"{task}: {label} is a {type(value).__name__}, which JSON cannot carry "
                f"({exc}); durable jobs travel as JSON only: pass str, int, float, bool, "
                "None, datetime, UUID, Decimal, or lists and dicts of them (e.g. an id)"
            )
    return NotJSONSerializable(f"{task}: the arguments cannot be encoded as JSON")


class FirstMessage:
    """A producer that writes the job's record just before its first message goes out.

    Everything else (events, other messages) passes through to the real producer.
    """

    def __init__(
        self, producer: Any, rt: Runtime, job_id: str, task: str, policy: str,
        unread: str | None = None,
    ) -> None:  # fmt: skip
        self._producer = producer
        self._unread_reply_to = unread  # a reply_to not to keep (unread_reply_to)
        self._rt = rt
        self._job_id = job_id
        self._task = task
        self._policy = policy
        self.created_ms: int | None = None  # set when this enqueue wrote the record
        self.sent = False  # the job's first message is out (or only the due set holds it)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def publish(self, body: Any, **publish: Any) -> Any:
        headers = publish.get("headers") or {}
        if headers.get("id") != self._job_id or headers.get("task") != self._task:
            return self._producer.publish(body, **publish)
        if self.created_ms is None:
            batch = current_batch()
            if batch is not None:
                # A group's member: its record and message go out with the group's.
                batch.add(self, body, publish)
                return None
            job = self.new_job(body, publish)
            if job.broker_holds and carries(self._producer):
                # The transport writes the record as it pushes the message.
                record = PendingRecord(self.store, job, lambda answer: self.written(answer, job))
                return self._sent(publish_with_record(self._producer, body, publish, record))
            if not self.written(self.store.enqueue_one(job), job):
                return self._sent(None)  # only the due set holds it: a sweeper publishes it
        return self._sent(self._producer.publish(body, **publish))

    def _sent(self, returned: Any) -> Any:
        self.sent = True
        return returned

    @property
    def store(self) -> Store:
        return self._rt.store

    def not_json(self, body: Any) -> NotJSONSerializable:
        args, kwargs = (body[0], body[1]) if isinstance(body, (list, tuple)) else ([], {})
        return not_json_error(self._task, args, kwargs)

    def send(self, body: Any, publish: dict[str, Any]) -> Any:
        """Publish the message whose record was written (a group's member)."""
        return self._producer.publish(body, **publish)

    def new_job(self, body: Any, publish: dict[str, Any]) -> NewJob:
        """The record to write for the job's first message, as it goes on the wire."""
        rt = self._rt
        headers = publish.get("headers") or {}
        options = options_from_message(body, publish, self._unread_reply_to)
        try:
            encoded = kombu_json.dumps(options) if options else ""
        except (TypeError, ValueError) as exc:
            raise EncodeError(exc) from exc
        if len(encoded) > MAX_OPTIONS_BYTES:
            raise EnqueueError(
                f"cannot enqueue {self._task} job {self._job_id}: its message options "
                f"(canvas, headers) take {len(encoded)} bytes as JSON, more than the "
                f"{MAX_OPTIONS_BYTES} bytes kept per job; pass large data by reference"
            )
        args, kwargs = (body[0], body[1]) if isinstance(body, (list, tuple)) else ([], {})
        countdown_ms = _countdown_ms(headers)
        try:
            payload = Payload(
                args=kombu_json.dumps(list(args)),
                kwargs=kombu_json.dumps(dict(kwargs)) if kwargs else "{}",
                queue=queue_of(publish), options=encoded,
            )  # fmt: skip
        except (TypeError, ValueError) as exc:
            raise EncodeError(exc) from exc  # named by apply_async, as kombu's own
        return NewJob(
            self._job_id, self._task, self._policy, payload, countdown_ms=countdown_ms,
            broker_holds=countdown_ms <= rt.settings.max_countdown * 1000,
            sweeper_grace_ms=rt.held_safety_ms if countdown_ms else 0,
        )  # fmt: skip

    def written(self, answer: Enqueued | redis.RedisError, job: NewJob) -> bool:
        """Take ``enqueue``'s answer; True if the message must be published now.
        Raises EnqueueError (nothing published) when Redis did not take the record."""
        if isinstance(answer, redis.RedisError):
            reason = refusal_reason(answer)
            why = f"refuses writes ({reason})" if reason else "did not take the record"
            raise EnqueueError(
                f"cannot enqueue {self._task} job {self._job_id}: the job state at "
                f"{redact_url(self._rt.settings.redis_url)} {why} "
                f"({type(answer).__name__}: {answer}); nothing was published"
            ) from answer
        if answer.new:
            self.created_ms = answer.created_ms
        else:
            log.info("job %s task=%s enqueued again: the record (%s) is kept; claim drops "
                     "the extra message", self._job_id, self._task, answer.state)  # fmt: skip
        return job.broker_holds

    def forget(self) -> None:
        """``apply_async`` failed after the record was written: remove the record, unless
        the message is out already (an interrupt after the publish): the job runs from
        that message, and its record keeps what its retries need (canvas, options)."""
        if self.created_ms is None or self.sent:
            return
        try:
            self._rt.store.forget(self._job_id, self.created_ms)
        except redis.RedisError as exc:
            # The caller gets the broker's error; this record would make the
            # job run after the safety time, so say so.
            log.error(
                "job %s task=%s: the broker refused its message and its record could not "
                "be removed (%s); a sweeper will publish it after the safety time",
                self._job_id, self._task, exc,
            )  # fmt: skip
