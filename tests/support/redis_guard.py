"""The test suite's guard: never run against a database that holds data."""

from __future__ import annotations

import redis

from workers.ops.embedded_redis import RedisServerError


def assert_empty(client: redis.Redis) -> None:
    """Refuse to run tests against a database that already holds data."""
    size = client.dbsize()
    if size:
        raise RedisServerError(
            f"refusing to run tests against a non-empty Redis database ({size} keys); "
            "the tests start their own server, never point them at real data"
        )
