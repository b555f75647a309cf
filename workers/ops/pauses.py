"""Pausing the jobs of a policy or a task, and releasing them gently.

A pause is one field of ``<prefix>:pauses`` (``policy:<P>`` or ``task:<T>``),
so it lives as long as Redis' data (AOF) and every worker and sweeper sees it
at its next script. While it holds, ``claim`` drops a delivery of those jobs
without counting an attempt and ``dispatched`` publishes nothing for them:
either moves the job to ``<prefix>:deferred`` (the first time noted as its
``paused_at``). Fresh enqueues are written and published as usual, and the
worker's claim defers them the same way.

``unpause`` ends the pause, then releases the deferred jobs no other pause
holds, at ``rate`` jobs a second, each at a random point of its own slot
(jittered, never all at once): they enter the due set at those times and the
sweepers publish them. Each released job's windows move forward by the time
it was held (``release.lua``), so a pause never makes a policy give up.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from workers.core.store import Store

DEFAULT_RELEASE_RATE = 10.0
"""Jobs per second ``unpause`` releases unless told: a backlog of 10,000 jobs
takes about 17 minutes, which a dependency that just came back can take."""
RELEASE_BATCH = 500
"""Jobs per release script: a short script, so Redis is never blocked long."""
TARGET_KINDS = ("policy", "task")


@dataclass(frozen=True)
class Released:
    released: int
    still_paused: int  # deferred jobs another pause still holds
    seconds: float  # how long the release is spread over


def target(kind: str, name: str) -> str:
    if kind not in TARGET_KINDS:
        raise ValueError(f"a pause is of a policy or a task, not {kind!r}")
    return f"{kind}:{name}"


def pause(store: Store, kind: str, name: str, reason: str) -> bool:
    """Pause the jobs of a policy or a task; False if it was paused already."""
    entry = json.dumps({"reason": reason, "since_ms": store.now_ms()}, separators=(",", ":"))
    return store.pause(target(kind, name), entry)


def unpause(
    store: Store, kind: str, name: str, rate: float = DEFAULT_RELEASE_RATE,
    rng: random.Random | None = None,
) -> Released:  # fmt: skip
    """End the pause and release its deferred jobs at ``rate`` a second, jittered."""
    if rate <= 0:
        raise ValueError("the release rate must be above 0 jobs a second")
    rng = rng or random.Random()
    store.end_pause(target(kind, name))
    ids = store.deferred_ids()
    start, interval_ms = store.now_ms(), 1000.0 / rate
    released = slot = 0
    for at in range(0, len(ids), RELEASE_BATCH):
        batch = ids[at : at + RELEASE_BATCH]
        n, slot = store.release(batch, [rng.random() for _ in batch], start, interval_ms, slot)
        released += n
    return Released(released, len(store.deferred_ids()), slot * interval_ms / 1000)


def pauses(store: Store) -> dict[str, dict[str, object]]:
    """``policy:<P>`` / ``task:<T>`` -> its reason and since when (ms)."""
    return {name: json.loads(entry) for name, entry in store.pauses().items()}
