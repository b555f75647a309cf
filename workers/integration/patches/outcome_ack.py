"""kombu's Redis ack leaves Redis alone for a message its outcome script acked already.

``QoS.ack`` (kombu/transport/redis.py) removes the delivery tag from the
``unacked_index`` zset and the ``unacked`` hash in a MULTI/EXEC round trip,
then forgets the message in memory. For a durable attempt whose ``succeed``
or ``fail`` script did the removal (workers/integration/broker_ack.py), the
worker's main process marks the tag first (:func:`acked_in_script`); the
wrapped ``ack`` then only forgets it in memory. Every other ack (and every
reject) is kombu's own.

Celery may run the ack a little later (``call_soon``: the next turn of the
event loop), so the mark waits for it; marks of messages whose ack never
comes (a lost connection) are dropped past :data:`MAX_MARKS`.
"""

from __future__ import annotations

from typing import Any

# Delivery tags (uuids) marked and not acked yet: an ack follows each mark
# within a turn of the event loop, so this stays tiny; the cap bounds it anyway.
MAX_MARKS = 10_000
_marks: dict[str, None] = {}
_patched = False


def acked_in_script(tag: str) -> None:
    """The outcome script acked ``tag`` in Redis: kombu's ack need not (main process)."""
    if not _patched:
        return  # kombu's own ack then runs in full: an ack twice is harmless
    _marks[tag] = None
    if len(_marks) > MAX_MARKS:
        del _marks[next(iter(_marks))]


def skip_acked_deliveries() -> None:
    """Wrap kombu's Redis ``QoS.ack`` (once per process)."""
    global _patched
    from kombu.transport import redis as kombu_redis

    qos_cls: Any = kombu_redis.QoS
    if getattr(qos_cls, "_durable_outcome_ack", False):
        _patched = True
        return
    ack = qos_cls.ack

    def outcome_aware_ack(self: Any, delivery_tag: Any) -> Any:
        if _marks.pop(delivery_tag, 0) is None:
            # Already gone from Redis: only the in-memory bookkeeping (virtual QoS).
            return super(kombu_redis.QoS, self).ack(delivery_tag)
        return ack(self, delivery_tag)

    outcome_aware_ack.__doc__ = ack.__doc__
    qos_cls.ack = outcome_aware_ack
    qos_cls._durable_outcome_ack = True
    _patched = True
