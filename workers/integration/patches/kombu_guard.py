"""Guards around kombu's Redis transport (kombu 5.7) that keep a worker up.

Patches of kombu internals, installed once at worker start: recheck them when
kombu is upgraded (tests/integration/test_faults.py and test_bad_input.py
fail if the behaviour they guard against comes back unguarded).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def harden_redis_transport() -> None:
    """Keep the worker up when the Redis broker goes away or holds garbage (kombu 5.7).

    An item on the queue list that is not a kombu JSON envelope (pushed by
    hand, by another program, or truncated) made kombu raise while reading
    it, and Celery stopped the worker as for an unrecoverable error. It is
    dropped and logged instead (it was already popped; nothing could run it).

    On a lost connection Celery closes it; later, kombu's Redis channel still
    uses that closed transport, to push unacked messages back and to ack the
    messages of attempts that finish after the reconnect. Both failed with an
    ``AttributeError`` (``client.hostname`` of a transport without a client),
    which Celery treats as unrecoverable: every worker shut down when Redis
    restarted. Here that case raises a connection error instead, which Celery
    and kombu already handle (log, reconnect). Nothing is lost: such messages
    stay in kombu's unacked hash (the visibility timeout brings them back, and
    claim drops the copy) and the job state in Redis (due set, leases) has the
    sweepers publish or recover each attempt sooner.
    """
    import redis.exceptions
    from kombu.transport import redis as kombu_redis

    channel_cls: Any = kombu_redis.Channel
    qos_cls: Any = kombu_redis.QoS
    if getattr(channel_cls, "_durable_guard", False):
        return
    connparams, restore_unacked = channel_cls._connparams, qos_cls.restore_unacked
    brpop_read = channel_cls._brpop_read

    def guarded_brpop_read(self: Any, **options: Any) -> Any:
        try:
            return brpop_read(self, **options)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.error(
                "durable-retry: dropped an unreadable message from the broker queue "
                "(not a Celery JSON message): %s: %.200s", type(exc).__name__, exc,
            )  # fmt: skip
            raise kombu_redis.Empty() from exc

    def guarded_connparams(self: Any, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection was closed")
        return connparams(self, asynchronous=asynchronous)

    def guarded_restore_unacked(self: Any, client: Any = None) -> Any:
        transport = self.channel.connection
        if client is None and (transport is None or transport.client is None):
            log.warning(
                "durable-retry: broker connection lost; %d unacked message(s) left to "
                "the visibility timeout and the sweepers", len(self._delivered),
            )  # fmt: skip
            self._delivered.clear()
            return None
        return restore_unacked(self, client)

    channel_cls._connparams = guarded_connparams
    channel_cls._brpop_read = guarded_brpop_read
    qos_cls.restore_unacked = guarded_restore_unacked
    channel_cls._durable_guard = True
