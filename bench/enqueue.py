"""Scenarios 8 and 9: what durable from enqueue costs the producer, and what a death copies.

8. The producer: ``job.delay(i)`` in a loop and one ``group`` of 1,000, durable
   task against the same plain Celery task, each from a producer process of its
   side (:mod:`bench.producer`), alternating A/B; the rate is the loop's wall
   time (median of the runs), the round trips are the layer's script calls per
   enqueue (``INFO commandstats``).
9. A worker death with a backlog: 10,000 first attempts enqueued (durable
   ``apply_async``) on a queue no worker consumes, one dead node that had said
   it may hold 4 messages (a heartbeat, then silence), and a real worker on
   another queue whose sweeper notices the death. Counted: the first attempts
   its sweeper publishes again.
"""

from __future__ import annotations

import time
from typing import Any

from bench.harness import QUEUE, SIDES, Bench, load, median
from bench.report import Row, Section
from workers.core.store import Store

# What a dead worker of the bench's fleet may have held: prefetch 4 x 1 process.
DEAD_CAPACITY = 4
DEAD_NODE = "sweeper:dead-bench-node@bench:1"
OTHER_QUEUE = "bench-other"
WARMUP = 50


def _rate(results: list[dict[str, Any]]) -> float:
    return median([r["n"] / r["seconds"] for r in results])


def _spread(results: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['n'] / r['seconds']:.0f}" for r in sorted(
        results, key=lambda r: r["n"] / r["seconds"]))  # fmt: skip


def producer(bench: Bench, n: int, group_size: int, runs: int) -> Section:
    section = Section(
        "8. Enqueue (the producer)", load_before=load(),
        settings=f"Per run and side, one producer process (bench/producer.py) enqueues "
        f"{WARMUP} jobs untimed (connections, script load), then times `noop.delay(i)` for "
        f"{n:,} jobs in a loop, and, in another process, `group(noop.s(i) for i in "
        f"range({group_size:,})).apply_async()`; {runs} runs per side, alternating A/B, "
        "medians. No worker runs; the queue is emptied between runs. durable-retry: "
        "`bench.jobs.noop` (DurableTask.apply_async: the script `enqueue` writes the record "
        "and, the broker being the same Redis, pushes the message too); plain Celery: "
        "`bench.plain_jobs.noop`, the same app settings "
        "(task-sent events on: each publish is an LPUSH and a PUBLISH). A durable group "
        "writes its members' records in one pipeline, then publishes them "
        "(workers/integration/group_batch.py).",
    )  # fmt: skip
    loops: dict[str, list[dict[str, Any]]] = {s: [] for s in SIDES}
    groups: dict[str, list[dict[str, Any]]] = {s: [] for s in SIDES}
    for round_ in range(runs):
        order = SIDES if round_ % 2 == 0 else tuple(reversed(SIDES))
        for side in order:
            bench.flush()
            loops[side].append(bench.produce(side, "noop", n, warmup=WARMUP))
            bench.flush()
            groups[side].append(
                bench.produce(side, "noop", group_size, mode="group", warmup=WARMUP)
            )
    bench.flush()
    trips = median([r["scripts"] / r["n"] for r in loops["durable"]])
    group_trips = median([r["scripts"] / r["n"] for r in groups["durable"]])
    section.rows += [
        Row("8", f"enqueue rate, `delay` in a loop ({n:,} jobs)", _rate(loops["durable"]),
            _rate(loops["plain"]), unit="jobs/s", bar=">= 0.80x", rule="ratio>=0.80"),
        Row("8", f"enqueue rate, a `group` of {group_size:,}", _rate(groups["durable"]),
            _rate(groups["plain"]), unit="jobs/s", bar=">= 0.80x", rule="ratio>=0.80"),
        Row("8", "producer script calls of the layer per enqueue (delay; it pushes the "
            "message too)", trips, None,
            bar="1 (enqueue)", rule="<=1.0", note="0 (no state)"),
        Row("8", "producer script calls of the layer per enqueue (group: one pipeline)",
            group_trips, None, bar="1 (enqueue)", rule="<=1.0", note="0 (no state)"),
    ]  # fmt: skip
    usec = median([r["script_usec"] / r["n"] for r in loops["durable"]])
    section.details += [
        f"- `delay` loop, jobs/s per run, durable-retry: {_spread(loops['durable'])}; plain "
        f"Celery: {_spread(loops['plain'])}",
        f"- group of {group_size:,}, jobs/s per run, durable-retry: "
        f"{_spread(groups['durable'])}; plain Celery: {_spread(groups['plain'])}",
        f"- Redis time of the `enqueue` script per job (commandstats): {usec:.1f} µs. "
        f"Commands per enqueue (first run), durable-retry: "
        f"{_commands(loops['durable'][0])}; plain Celery: {_commands(loops['plain'][0])} "
        "(the commands a script runs are counted under their own names).",
    ]
    section.load_after = load()
    return section


def _commands(result: dict[str, Any]) -> str:
    n = result["n"]
    parts = [f"{name} {calls / n:.2g}" for name, calls in sorted(result["commands"].items())
             if name != "info"]  # fmt: skip
    return ", ".join(parts)


def copies_per_death(bench: Bench, backlog: int, timeout: float = 120.0) -> Section:
    section = Section("9. Copies published per worker death, with a backlog", load_before=load())
    bench.flush()
    store = Store(bench.client)
    # The dead node: it said it may hold DEAD_CAPACITY messages, then went silent.
    store.heartbeat(DEAD_NODE, 2**50, capacity=DEAD_CAPACITY)
    beat = time.monotonic()
    bench.produce("durable", "noop", backlog)
    unclaimed = int(bench.client.zcard(store.keys.unclaimed))
    if bench.client.llen(QUEUE) != backlog or unclaimed != backlog:
        raise RuntimeError(f"expected {backlog} queued and unclaimed first attempts, found "
                           f"{bench.client.llen(QUEUE)} and {unclaimed}")  # fmt: skip
    lease = float(bench.env("durable")["DURABLE_LEASE_SECONDS"])
    sweep = float(bench.env("durable")["DURABLE_SWEEP_SECONDS"])
    # Silent for a lease: the next heartbeat of any sweeper judges it dead.
    time.sleep(max(0.0, beat + lease + 0.2 - time.monotonic()))
    worker = bench.worker("durable", queues=OTHER_QUEUE, name="sweeper")
    try:
        deadline = time.monotonic() + timeout
        while "stopped answering" not in worker.log_text():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no death noticed:\n{worker.log_text()[-3000:]}")
            time.sleep(0.1)
        time.sleep(3 * sweep + 1)  # a few more passes: a death is copied once
        log = worker.log_text()
        capacities = bench.client.hgetall(store.keys.node_capacity)
        live = sum(int(v) for v in capacities.values())
    finally:
        worker.kill()
    copies = log.count("attempt=1 published again by the sweeper")
    counted = store.stats().get("recoveries:unclaimed", 0)
    growth = int(bench.client.llen(QUEUE)) - backlog
    if not copies == counted == growth:
        raise RuntimeError(f"copies disagree: log {copies}, stats {counted}, queue {growth}")
    capacity = live + DEAD_CAPACITY
    section.settings = (
        f"{backlog:,} first attempts enqueued with `noop.delay(i)` (durable-retry, records "
        f"written at enqueue) on queue `{QUEUE}`, which no worker consumes; a dead node "
        f"registered by one heartbeat with capacity {DEAD_CAPACITY} (prefetch 4 x 1 process), "
        f"silent for a lease ({lease:g} s); then one durable worker (prefork, 2 processes, "
        f"prefetch 4: capacity {live}) consuming only `{OTHER_QUEUE}`. Its sweeper notices "
        f"the death and publishes again the oldest unclaimed first attempts, at most the "
        f"fleet's capacity ({live} + {DEAD_CAPACITY} = {capacity}); counted after "
        f"{3 * sweep + 1:g} s more of sweeps by the worker's log lines, "
        "`recoveries:unclaimed` and the queue's growth (all three agree)."
    )
    section.rows.append(Row(
        "9", f"copies published per worker death, {backlog:,} queued first attempts",
        copies, None, bar=f"<= fleet prefetch capacity ({capacity})", rule=f"<={capacity}",
        note="0 (no sweeper: a dead worker's prefetched messages return after the "
        "visibility timeout, 3600 s)",
    ))  # fmt: skip
    section.details.append(
        f"- fleet capacity {capacity}: the live worker's {live} (`durable:node_capacity`) and "
        f"the dead node's {DEAD_CAPACITY}; backlog {backlog:,}, copies {copies}."
    )
    bench.flush()
    section.load_after = load()
    return section
