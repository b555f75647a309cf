"""kombu's Redis channel builds one redis-py client per pool, not one per call
(workers/integration/patches/client_reuse.py): a new one once kombu drops its pools,
and the shared one still sends across a Redis restart and from several threads.
"""

from __future__ import annotations

import threading

import pytest
from kombu import Connection

from workers.integration.patches.client_reuse import reuse_channel_clients

pytestmark = pytest.mark.integration


def test_a_channel_builds_one_sync_client_per_pool(redis_client, redis_server):
    reuse_channel_clients()
    with Connection(redis_server.url) as connection:
        channel = connection.channel()
        try:
            first = channel._create_client()
            with channel.conn_or_acquire() as acquired:
                assert acquired is first
            assert first.connection_pool is channel.pool
            # The asynchronous client (BRPOP, pub/sub) is kombu's own, on its own pool.
            assert channel._create_client(asynchronous=True) is not first
            # kombu drops its pools after a lost connection: the next client is new,
            # on the new pool.
            channel._disconnect_pools()
            second = channel._create_client()
            assert second is not first
            assert second.connection_pool is channel.pool
            assert channel._create_client() is second
        finally:
            channel.close()


def test_the_shared_client_sends_across_a_restart_and_from_threads(
    redis_client, redis_server
):
    reuse_channel_clients()
    with Connection(redis_server.url) as connection:
        queue = connection.SimpleQueue("client-reuse-test")
        try:
            queue.put({"n": 0})
            assert queue.get(timeout=5).payload == {"n": 0}
            channel = queue.channel
            client = channel._create_client()
            # A restart drops the pool's connections; the shared client reconnects
            # through it (the consumer's BRPOP client is kombu's own, untouched).
            redis_server.restart()
            queue.put({"n": 1})
            assert channel._create_client() is client
            assert redis_client.llen("client-reuse-test") == 1
            # One channel's client, shared by threads: each LPUSH lands once.
            errors: list[BaseException] = []

            def push(start: int) -> None:
                try:
                    for n in range(start, start + 200):
                        channel._create_client().lpush("client-reuse-threads", n)
                except BaseException as exc:  # reported below
                    errors.append(exc)

            threads = [threading.Thread(target=push, args=(i * 1000,)) for i in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert not errors
            pushed = sorted(int(n) for n in client.lrange("client-reuse-threads", 0, -1))
            assert pushed == sorted(n for i in range(4) for n in range(i * 1000, i * 1000 + 200))
        finally:
            queue.close()
