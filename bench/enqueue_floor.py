"""The floor of durable from enqueue: what one blocking round trip costs a producer.

``python -m bench.enqueue_floor [--jobs 5000] [--runs 3]`` times ``noop.delay(i)`` in
a loop from a producer process (bench/producer.py), alternating: durable-retry, plain
Celery, and plain Celery with one bare EVALSHA round trip (``return 1``) before each
``delay``. The last is what writing a record before the message costs at the least:
the job must be durable when ``apply_async`` returns, so the producer waits for it.
With the broker on the job state's Redis (as here) the durable side's script pushes
the message too, so it makes no round trip more than plain Celery: the third variant
is then the floor of a broker on another Redis, where the record is written alone.

``--timers`` adds, each round, one run per side with per-call timers around the
pieces of ``apply_async`` (``bench.producer --timers``; not in the rates above) and
prints their medians in µs per job: where the durable side's extra time goes.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from bench.enqueue import WARMUP, _rate
from bench.harness import Bench

VARIANTS = (("durable", "delay"), ("plain", "delay"), ("plain", "delay+rt"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.enqueue_floor")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timers", action="store_true")
    args = parser.parse_args(argv)
    results: dict[tuple[str, str], list] = {v: [] for v in VARIANTS}
    timed: dict[str, list[dict[str, Any]]] = {"durable": [], "plain": []}
    with Bench() as bench:
        for round_ in range(args.runs):
            for side, mode in VARIANTS if round_ % 2 == 0 else reversed(VARIANTS):
                bench.flush()
                results[(side, mode)].append(
                    bench.produce(side, "noop", args.jobs, mode=mode, warmup=WARMUP)
                )
            for side in timed if args.timers else ():
                bench.flush()
                run = bench.produce(side, "noop", args.jobs, warmup=WARMUP, timers=True)
                timed[side].append(run["timers"])
        bench.flush()
    plain = _rate(results[("plain", "delay")])
    print("| variant | jobs/s (median) | of plain | runs |\n|---|---:|---:|---|")
    for (side, mode), runs in results.items():
        rate = _rate(runs)
        each = ", ".join(f"{r['n'] / r['seconds']:.0f}" for r in runs)
        print(f"| {side} {mode} | {rate:,.0f} | {rate / plain:.2f}x | {each} |")
    for side, runs in timed.items():
        if runs:
            print(f"\n{side}, per-call timers (µs per job, medians of {len(runs)}; one timer "
                  f"adds {runs[0]['overhead_ns'][0] / 1e3:.2f} µs wall, not subtracted):")
            for line in timer_lines(runs):
                print(line)
    return 0


def timer_lines(runs: list[dict[str, Any]]) -> list[str]:
    """Per timer: calls per job, wall and CPU µs per job (medians over runs)."""
    lines = ["| piece | calls/job | wall µs | CPU µs |", "|---|---:|---:|---:|"]
    for name in runs[0]["totals"]:
        rows = [[v / r["jobs"] for v in r["totals"][name]] for r in runs]
        calls, wall, cpu = (statistics.median(row[i] for row in rows) for i in range(3))
        lines.append(f"| {name} | {calls:.2f} | {wall / 1e3:.0f} | {cpu / 1e3:.0f} |")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
