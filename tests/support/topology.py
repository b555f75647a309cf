"""Starting a Redis topology a test owns (Sentinel, Cluster), or skipping the test
with the reason where this machine's redis-server cannot run it."""

from __future__ import annotations

from typing import Protocol, TypeVar

import pytest

from workers.ops.embedded_redis import RedisServerError


class Topology(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


T = TypeVar("T", bound=Topology)


def started_or_skipped(topology: T, what: str) -> T:
    """``topology`` started; if redis-server cannot run it here, the test is skipped
    naming ``what`` and the reason (never an error, never a silent pass)."""
    try:
        topology.start()
    except (RedisServerError, OSError) as exc:  # pragma: no cover - depends on the machine
        topology.stop()
        pytest.skip(f"redis-server cannot run {what} here: {exc}")
    return topology
