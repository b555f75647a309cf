"""A step run again and again on a daemon thread while a ``with`` block lasts: the
invariant sampler and the failover tests' write probes."""

from __future__ import annotations

import threading
from typing import TypeVar

T = TypeVar("T", bound="Background")


class Background:
    """Calls :meth:`step` every ``interval`` seconds from ``__enter__`` to ``__exit__``."""

    def __init__(self, name: str, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def step(self) -> None:
        raise NotImplementedError

    def __enter__(self: T) -> T:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.step()
            self._stop.wait(self.interval)
