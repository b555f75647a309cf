"""Per-call timers: wall and CPU time around named calls, for the bench's accounting.

Used by the cost probe's worker (``bench.cost --variants durable+timers``) and the
producer (``bench.producer --timers``); nothing in ``workers/`` changes on disk, the
calls are wrapped in the bench's own process only.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from typing import Any


def timed(row: list[int], fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, adding to ``row`` [calls, wall ns, this thread's CPU ns] on each call."""
    wall, cpu = time.perf_counter_ns, time.thread_time_ns

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        w, c = wall(), cpu()
        try:
            return fn(*args, **kwargs)
        finally:
            row[1] += wall() - w
            row[2] += cpu() - c
            row[0] += 1

    return call


def overhead_ns(n: int = 20_000) -> tuple[float, float]:
    """(wall, CPU) ns one timer adds around a call, measured here."""
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    inner = timed([0, 0, 0], lambda: None)
    w, c = wall(), cpu()
    for _ in range(n):
        inner()
    w1, c1 = wall() - w, cpu() - c
    w, c = wall(), cpu()
    for _ in range(n):
        (lambda: None)()
    w2, c2 = wall() - w, cpu() - c
    return (w1 - w2) / n, (c1 - c2) / n


class Timers:
    """Per name: calls, wall ns and this thread's CPU ns; written to ``out`` (JSON)."""

    def __init__(self, out: str = "") -> None:
        self.totals: dict[str, list[int]] = {}
        self.jobs = 0
        self.out = out
        self.overhead = overhead_ns()

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        return timed(self.totals.setdefault(name, [0, 0, 0]), fn)

    def clear(self) -> None:
        for row in self.totals.values():
            row[:] = [0, 0, 0]
        self.jobs = 0

    def as_json(self) -> dict[str, Any]:
        return {"jobs": self.jobs, "totals": self.totals, "overhead_ns": self.overhead}

    def dump(self) -> None:
        if self.out:
            with open(self.out + ".tmp", "w") as f:
                json.dump(self.as_json(), f)
            os.replace(self.out + ".tmp", self.out)
