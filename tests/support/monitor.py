"""What a real Redis ran, as its MONITOR stream shows it (no mock: the server's own account)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from workers.ops.embedded_redis import RedisServer


def commands_during(redis_server: RedisServer, action: Callable[[], Any]) -> list[dict[str, Any]]:
    """What Redis ran while ``action`` ran (MONITOR), up to a marker sent after it."""
    watcher = redis.Redis.from_url(redis_server.url, socket_timeout=10, decode_responses=True)
    marker = f"end-of-watch-{time.time_ns()}"
    seen: list[dict[str, Any]] = []
    with watcher.monitor() as monitor:
        action()
        redis_server.client().echo(marker)
        for _ in range(100_000):
            command = monitor.next_command()
            if marker in command["command"]:
                return seen
            seen.append(command)
    raise AssertionError(f"the marker never came; {len(seen)} commands seen")


def script_calls(redis_server: RedisServer, action: Callable[[], Any]) -> list[list[list[str]]]:
    """The commands each script ``action`` ran made from inside it, a list per EVALSHA
    (a script runs whole, so its calls follow its EVALSHA on the stream), each call
    as its words (``["HMGET", "durable:job:x", "state", ...]``). An EVALSHA that ran
    nothing is left out: Redis answered NOSCRIPT, and redis-py loaded the script
    and sent it again (the scripts here all make a call)."""
    scripts: list[list[list[str]]] = []
    for command in commands_during(redis_server, action):
        words = command["command"].split()
        if command["client_type"] == "lua" and scripts:
            scripts[-1].append(words)
        elif words[0] == "EVALSHA":
            scripts.append([])
    return [calls for calls in scripts if calls]
