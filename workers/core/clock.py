"""Redis' clock, carried into the attempt without another round trip.

The claim script returns Redis' ``TIME``; from then on the attempt adds the
time elapsed on its own monotonic clock. Decisions (``decide(now=...)``) thus use
the same clock as due times and leases, whatever this host's wall clock says.
"""

from __future__ import annotations

import time


class RedisClock:
    """Seconds since the epoch by Redis' clock, anchored at one reading."""

    def __init__(self, redis_now_ms: int) -> None:
        self._anchor = redis_now_ms / 1000
        self._monotonic = time.monotonic()

    def now(self) -> float:
        return self._anchor + (time.monotonic() - self._monotonic)
