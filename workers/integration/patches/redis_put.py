"""kombu's Redis transport writes a durable job's record as it pushes the job's first message.

``Channel._put`` (kombu/transport/redis.py) pushes a message onto a queue's
list; ``Channel._put_fanout`` publishes it to a fanout exchange's subscribers.
While a durable job's first message is published with its record pending
(workers/integration/record_push.py), the wrappers write that record first:

- ``_put`` onto this Redis, as kombu would (same list key, same encoding), when the
  store's Redis is the broker's (:meth:`Store.serves`): the ``enqueue`` script writes
  the record and pushes the message, one round trip for both;
- otherwise the record alone, then kombu's own push.

Every other message goes through untouched.
"""

from __future__ import annotations

from typing import Any

from kombu.utils.json import dumps

from workers.integration import record_push
from workers.integration.redis_broker import channel_is_store


def _pushes_itself(channel: Any, queue: str, kwargs: dict[str, Any], store: Any) -> bool:
    """Whether the script can push this message as kombu's ``_put`` would: onto one
    list, with no key prefix, no queue expiry, no producer batch, on the store's Redis."""
    expires = getattr(channel, "_expires", None)  # x-expires queues: kombu 5.7 and later
    return (
        kwargs.get("_publish_batch") is None
        and not (expires and queue in expires)
        and channel_is_store(channel, store)
    )


def write_records_with_messages() -> None:
    """Wrap ``Channel._put`` and ``Channel._put_fanout`` (once per process)."""
    from kombu.transport import redis as kombu_redis

    channel_cls: Any = kombu_redis.Channel
    if getattr(channel_cls, "_durable_record_push", False):
        return
    put, put_fanout = channel_cls._put, channel_cls._put_fanout

    def _put(self: Any, queue: str, message: Any, **kwargs: Any) -> Any:
        record = record_push.pending()
        if record is None:
            return put(self, queue, message, **kwargs)
        if _pushes_itself(self, queue, kwargs, record.store):
            priority = self._get_message_priority(message, reverse=False)
            record.write(self._q_for_pri(queue, priority), dumps(message))
            return None
        record.write()
        return put(self, queue, message, **kwargs)

    def _put_fanout(self: Any, exchange: str, message: Any, routing_key: str,
                    **kwargs: Any) -> Any:  # fmt: skip
        record = record_push.pending()
        if record is not None:
            record.write()
        return put_fanout(self, exchange, message, routing_key, **kwargs)

    _put.__doc__, _put_fanout.__doc__ = put.__doc__, put_fanout.__doc__
    channel_cls._put, channel_cls._put_fanout = _put, _put_fanout
    channel_cls._durable_record_push = True
    record_push.mark_transport_patched()
