"""The attempt's outcome script acks its message, when the broker is the store's Redis.

Celery acks a late-acked message after the task returns: kombu's Redis
transport removes its delivery tag from two keys (``unacked_index``, a zset,
and ``unacked``, a hash) in a MULTI/EXEC round trip of the worker's main
process. When the broker is the very Redis the job state lives in, the
``succeed`` and ``fail`` scripts do that removal themselves, in the same
step as the outcome (lua/lib/broker_ack.lua), and the main process leaves
Redis alone when it acks (``patches/outcome_ack.py``): one round trip and
its Python less per attempt (bench/FINDINGS.md, 2026-12-07 evening).

The outcome and the ack are one step, so the invariant "the outcome is
recorded before the ack" holds with no window at all. Both sides decide
alike, from the app's configuration (:func:`unacked_keys`): the attempt
sends the ack with its outcome (:func:`delivery_ack`), and the main process
skips its own removal only for a message whose attempt returned or retried
(``DurableRequest``). Should they ever disagree, the cost is an ack done
twice (nothing) or a message left in ``unacked``: the visibility timeout
delivers it again and claim drops it, nothing runs twice.
"""

from __future__ import annotations

import logging
from typing import Any

from workers.core.outcomes import DeliveryAck
from workers.integration.extension import durable_of
from workers.integration.redis_broker import channel_is_store

log = logging.getLogger(__name__)


def unacked_keys(app: Any) -> tuple[str, str] | None:
    """kombu's ``(unacked_index, unacked)`` key names when ``app``'s broker is its
    store's Redis, through kombu's Redis transport without a key prefix; else None.

    Read once per process from a broker channel (its transport options applied);
    an unreachable broker is asked again next time.
    """
    extension = durable_of(app)
    if extension.unacked_keys_checked:
        return extension.unacked_keys
    from kombu.transport import redis as kombu_redis

    store = extension.runtime.store
    keys: tuple[str, str] | None = None
    try:
        with app.connection_for_read() as connection:
            if isinstance(connection.transport, kombu_redis.Transport):
                # channel(), not default_channel: it connects with one try, where
                # default_channel would retry as the broker settings say (for ever).
                channel = connection.channel()
                try:
                    if channel_is_store(channel, store):
                        keys = (str(channel.unacked_index_key), str(channel.unacked_key))
                finally:
                    channel.close()
    except Exception as exc:  # the broker answers later; the plain ack serves meanwhile
        log.debug("durable-retry: broker not checked for acks in scripts: %s", exc)
        return None
    extension.unacked_keys, extension.unacked_keys_checked = keys, True
    return keys


def delivery_ack(task: Any) -> DeliveryAck | None:
    """What the running attempt's outcome script acks: its message, when Celery acks
    it late and the broker is the store's Redis (:func:`unacked_keys`)."""
    if not task.acks_late:
        return None
    keys = unacked_keys(task.app)
    tag = (task.request.properties or {}).get("delivery_tag") if keys else None
    if not tag or keys is None:
        return None
    return DeliveryAck(index_key=keys[0], hash_key=keys[1], tag=str(tag))
