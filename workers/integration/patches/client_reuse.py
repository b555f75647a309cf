"""kombu's Redis transport reuses one redis-py client per channel and pool.

``Channel.conn_or_acquire`` (kombu/transport/redis.py) builds a new
``redis.Redis`` on its connection pool (``_create_client``) for every
publish, event, ack and reject. Building one costs about 140 µs of Python in
redis-py 6 and later (it fills a table of response callbacks), more than the
command it sends: a plain Celery worker builds three per job (its events'
PUBLISH, the delivery's bookkeeping, the ack), close to a millisecond of CPU
per job on a small machine, for clients it drops at once (bench/FINDINGS.md).

A ``redis.Redis`` on a pool keeps no connection of its own: it takes one from
the pool per command and gives it back, and redis-py documents it as safe to
share between threads. So the wrapper hands back the channel's last client
while the channel's pool is the one that client was built on; when kombu
drops its pools (a lost connection, ``Channel.close``), the next call builds
a new client on the new pool. The asynchronous client (BRPOP, pub/sub) is
kombu's own cached one already and goes through untouched.
"""

from __future__ import annotations

from typing import Any

_CACHE = "_durable_sync_client"


def reuse_channel_clients() -> None:
    """Wrap kombu's Redis ``Channel._create_client`` (once per process)."""
    from kombu.transport import redis as kombu_redis

    channel_cls: Any = kombu_redis.Channel
    if getattr(channel_cls, "_durable_client_reuse", False):
        return
    create = channel_cls._create_client

    def _create_client(self: Any, asynchronous: bool = False) -> Any:
        if asynchronous:
            return create(self, asynchronous)
        pool = self.pool
        client = self.__dict__.get(_CACHE)
        if client is None or client.connection_pool is not pool:
            client = create(self, asynchronous)
            setattr(self, _CACHE, client)
        return client

    _create_client.__doc__ = create.__doc__
    channel_cls._create_client = _create_client
    channel_cls._durable_client_reuse = True
