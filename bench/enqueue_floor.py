"""The floor of durable from enqueue: what one blocking round trip costs a producer.

``python -m bench.enqueue_floor [--jobs 5000] [--runs 3]`` times ``noop.delay(i)`` in
a loop from a producer process (bench/producer.py), alternating: durable-retry, plain
Celery, and plain Celery with one bare EVALSHA round trip (``return 1``) before each
``delay``. The last is what writing a record before the message costs at the least:
the job must be durable when ``apply_async`` returns, so the producer waits for it.
"""

from __future__ import annotations

import argparse

from bench.enqueue import WARMUP, _rate
from bench.harness import Bench

VARIANTS = (("durable", "delay"), ("plain", "delay"), ("plain", "delay+rt"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.enqueue_floor")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    results: dict[tuple[str, str], list] = {v: [] for v in VARIANTS}
    with Bench() as bench:
        for round_ in range(args.runs):
            for side, mode in VARIANTS if round_ % 2 == 0 else reversed(VARIANTS):
                bench.flush()
                results[(side, mode)].append(
                    bench.produce(side, "noop", args.jobs, mode=mode, warmup=WARMUP)
                )
        bench.flush()
    plain = _rate(results[("plain", "delay")])
    print("| variant | jobs/s (median) | of plain | runs |\n|---|---:|---:|---|")
    for (side, mode), runs in results.items():
        rate = _rate(runs)
        each = ", ".join(f"{r['n'] / r['seconds']:.0f}" for r in runs)
        print(f"| {side} {mode} | {rate:,.0f} | {rate / plain:.2f}x | {each} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
