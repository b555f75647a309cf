"""Store.serves: the enqueue script pushes a first message itself only onto the
broker that is the store's own Redis, database and user (no connection is made)."""

from __future__ import annotations

import pytest
import redis

from workers.core.store import Store


def _store(url: str) -> Store:
    return Store(redis.Redis.from_url(url))


def _kombu_pool(**kwargs) -> redis.ConnectionPool:
    """A pool as kombu's Redis transport builds it (Channel._connparams)."""
    params = {"host": "127.0.0.1", "port": 6379, "db": 0, "username": None,
              "password": None, "virtual_host": "/"} | kwargs  # fmt: skip
    return redis.ConnectionPool(**params)


def _socket_pool(path: str) -> redis.ConnectionPool:
    return redis.ConnectionPool(connection_class=redis.UnixDomainSocketConnection, path=path)


@pytest.mark.parametrize(
    ("url", "pool", "same"),
    [
        ("redis://127.0.0.1:6379/0", _kombu_pool(), True),
        ("redis://127.0.0.1:6379", _kombu_pool(), True),  # db absent reads as 0
        ("redis://:secret@127.0.0.1:6379/0", _kombu_pool(password="other"), True),
        ("redis://127.0.0.1:6379/1", _kombu_pool(), False),
        ("redis://127.0.0.1:6380/0", _kombu_pool(), False),
        ("redis://localhost:6379/0", _kombu_pool(), False),  # not known to be the same
        ("redis://app:pw@127.0.0.1:6379/0", _kombu_pool(username="broker"), False),
        ("rediss://127.0.0.1:6379/0", _kombu_pool(), False),  # another connection class
        ("unix:///tmp/redis.sock?db=0", _socket_pool("/tmp/redis.sock"), True),
        ("unix:///tmp/other.sock?db=0", _socket_pool("/tmp/redis.sock"), False),
    ],
)
def test_a_broker_is_served_only_by_the_same_redis_database_and_user(url, pool, same):
    assert _store(url).serves(pool) is same


def test_no_pool_and_a_pool_without_connection_settings_are_not_served():
    store = _store("redis://127.0.0.1:6379/0")
    assert store.serves(None) is False
    assert store.serves(object()) is False


def test_a_store_that_waits_for_replicas_never_pushes_a_message_itself():
    """The record must be on the replicas (WAIT after the script) before the message."""
    store = Store(redis.Redis.from_url("redis://127.0.0.1:6379/0"), min_replicas=1)
    assert store.serves(_kombu_pool()) is False
