"""What ``DURABLE_REDIS_MIN_REPLICAS=1`` costs per transition, on a local primary + replica.

Run: ``.venv/bin/python -m tests.support.wait_cost [JOBS]``. Each job is one claim and
one succeed (two transitions) from one client, so the figure is the latency a worker
adds per transition, not a throughput ceiling. Numbers go in docs/DEPLOYING.md.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.support.sentinel import Sentinels
from workers.core.outcomes import Claimed, Payload
from workers.core.store import Store


def per_transition_us(store: Store, jobs: int) -> list[float]:
    timings = []
    for _ in range(jobs):
        job_id = str(uuid.uuid4())
        started = time.perf_counter()
        claimed = store.claim(job_id, 1, task="t", policy="fast", owner="bench:1",
                              lease_ms=60_000, payload=Payload("[]", "{}", ""))  # fmt: skip
        assert isinstance(claimed, Claimed)
        assert store.succeed(job_id, 1, "bench:1", 60_000)
        timings.append((time.perf_counter() - started) / 2 * 1e6)
    return timings


def main(jobs: int) -> None:
    with tempfile.TemporaryDirectory() as base:
        for aof in (False, True):
            topology = Sentinels(Path(base) / f"aof-{aof}")
            topology.primary.appendonly = topology.replica.appendonly = aof
            topology.start()
            try:
                for replicas in (0, 1):
                    store = Store.from_url(topology.url, sentinel_master=topology.name,
                                           min_replicas=replicas)  # fmt: skip
                    per_transition_us(store, 200)  # warm up: scripts loaded, pool made
                    t = sorted(per_transition_us(store, jobs))
                    print(
                        f"appendfsync {'always' if aof else 'off (no AOF)'}, MIN_REPLICAS="
                        f"{replicas}: median {statistics.median(t):.0f} us, "
                        f"p99 {t[int(len(t) * 0.99)]:.0f} us per transition ({jobs} jobs)"
                    )
            finally:
                topology.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
