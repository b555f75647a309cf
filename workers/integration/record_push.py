"""A first message that the enqueue script pushes itself: record and message in one round trip.

A durable ``delay`` writes its record before its message goes out, so a
producer waits for two round trips where plain Celery waits for one. When the
broker is the job state's own Redis (the default: one ``DURABLE_REDIS_URL``),
the two can be one: the ``enqueue`` script writes the record and pushes the
message onto the broker's list, both or neither (a script runs whole, so no
client sees the message before its record; a Redis that refuses either
refuses both).

The message is still Celery's and kombu's: routes, exchange lookup, priority,
envelope and encoding are theirs. While a job's first message is published,
:func:`publish_with_record` holds its record here (a :class:`PendingRecord`),
and the Redis transport, where it would push the message (``Channel._put``,
patched in ``workers.integration.patches.redis_put``), hands it to
:meth:`PendingRecord.write` instead. Where the script cannot push it (another
Redis or database, a Sentinel or Cluster store, ``DURABLE_REDIS_MIN_REPLICAS``,
a key prefix, a queue with ``x-expires``, a producer batch, a fanout exchange:
``Store.serves`` and ``patches.redis_put`` decide), the record is written on
its own and kombu pushes the message after it, as before. Each record is
written before its message in every case.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import redis

from workers.core.outcomes import Enqueued, NewJob
from workers.core.store import Store

_current: ContextVar[PendingRecord | None] = ContextVar("durable_pending_record", default=None)

_transport_patched = False


def mark_transport_patched() -> None:
    """Called by the patch once it is in place: from then on records may wait for it."""
    global _transport_patched
    _transport_patched = True


class PendingRecord:
    """The record of the first message being published now, until the transport writes it.

    ``taken(answer)`` is the first message's own handling of ``enqueue``'s answer
    (``FirstMessage.written``): it raises EnqueueError, so nothing is pushed,
    when Redis did not take the record.
    """

    def __init__(
        self, store: Store, job: NewJob, taken: Callable[[Enqueued | redis.RedisError], Any]
    ) -> None:
        self.store = store
        self.job = job
        self._taken = taken
        self.written = False

    def write(self, queue_key: str | None = None, message: str | None = None) -> None:
        """Write the record; with ``queue_key`` and ``message`` (kombu's encoding) push the
        message onto that list of this Redis in the same script."""
        self.written = True
        if queue_key is None or message is None:
            self._taken(self.store.enqueue_one(self.job))
            return
        try:
            answer: Enqueued | redis.RedisError = self.store.enqueue_with_message(
                self.job, queue_key, message
            )
        except redis.RedisError as exc:
            answer = exc
        self._taken(answer)


def pending() -> PendingRecord | None:
    """The record waiting for the message the transport is pushing now, if any."""
    record = _current.get()
    return record if record is not None and not record.written else None


def carries(producer: Any) -> bool:
    """Whether ``producer`` publishes through kombu's Redis transport with the patch in
    place (checked without connecting: the publish's own retries still connect)."""
    if not _transport_patched:
        return False
    from kombu.transport.redis import Transport

    connection = getattr(producer, "connection", None)
    return isinstance(getattr(connection, "transport", None), Transport)


@contextmanager
def _holding(record: PendingRecord) -> Iterator[None]:
    token = _current.set(record)
    try:
        yield
    finally:
        _current.reset(token)


def publish_with_record(producer: Any, body: Any, publish: dict[str, Any],
                        record: PendingRecord) -> Any:  # fmt: skip
    """Publish a first message whose record the transport writes just before pushing it.

    A message no queue took (an exchange with no queue bound) was pushed nowhere:
    its record is written afterwards, as it would have been before the publish.
    """
    with _holding(record):
        sent = producer.publish(body, **publish)
    if not record.written:
        record.write()
    return sent
