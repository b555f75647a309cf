"""Whether a kombu Redis channel writes its keys into the store's own Redis.

Two paths make a write of kombu's in a durable-retry script instead: the
``enqueue`` script pushes a job's first message (patches/redis_put.py), and
the outcome scripts ack a message (broker_ack.py). Both can only when the
key kombu would write is the very key the script writes: the same server,
database and user, and no ``global_keyprefix`` in front of kombu's names.
"""

from __future__ import annotations

from typing import Any

from workers.core.store import Store


def channel_is_store(channel: Any, store: Store) -> bool:
    """Whether kombu's keys on ``channel`` (a ``kombu.transport.redis.Channel``) are
    keys of ``store``'s Redis, under the same names (no ``global_keyprefix``)."""
    return not channel.global_keyprefix and store.serves(channel.pool)
