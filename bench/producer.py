"""A producer process: enqueue jobs the way an application does, and time it.

``python -m bench.producer SIDE JOB N [--mode delay|delay+rt|group] [--warmup K] [--queue Q]
[--timers]``

Run by the bench in a process of its own, with the environment a worker of
that side gets (:meth:`bench.harness.Bench.env`): the durable side imports
:mod:`bench.jobs` (the ready-made app, configured from ``DURABLE_*``), the
plain side :mod:`bench.plain_jobs`. So the durable side publishes through the
product path, ``DurableTask.apply_async`` (the record written at enqueue), and
the bench's own process keeps no durable settings.

``--mode delay`` calls ``job.delay(i)`` ``N`` times in a loop; ``--mode group``
sends ``group(job.s(i) for i in range(N)).apply_async()``; ``--mode delay+rt`` is
``delay`` with one bare EVALSHA round trip before each (the floor of a record written
at enqueue: bench/enqueue_floor.py). ``--warmup K``
enqueues ``K`` jobs first, untimed (connections, script loading). Prints one
JSON line: the loop's wall time and Redis' command counters over the loop
(``INFO commandstats``; nothing else runs against the bench's Redis meanwhile).
``--timers`` adds per-call timers around the pieces of ``apply_async`` (:func:`timed_pieces`)
and prints what they measured with the rest (``"timers"``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

import redis
from celery import group

from bench.harness import MODULES, CommandStats
from bench.timers import Timers


def timed_pieces(side: str) -> Timers:
    """Wrap, in this process only, what ``apply_async`` does on each side."""
    from celery.app.task import Task
    from kombu.messaging import Producer
    from redis.commands.core import Script

    timers = Timers()
    t = timers.wrap
    Task.apply_async = t("Celery's Task.apply_async (total)", Task.apply_async)
    Producer.publish = t("kombu Producer.publish (message + task-sent event)", Producer.publish)  # type: ignore[method-assign]
    if side == "durable":
        from workers.core.store import Store
        from workers.integration.enqueue import FirstMessage
        from workers.integration.task import DurableTask

        DurableTask.apply_async = t("DurableTask.apply_async (total)", DurableTask.apply_async)  # type: ignore[method-assign]
        FirstMessage.new_job = t("FirstMessage.new_job (the record)", FirstMessage.new_job)  # type: ignore[method-assign]
        Store.enqueue_many = t("Store.enqueue_many (the enqueue script)", Store.enqueue_many)  # type: ignore[method-assign]
        Store.enqueue_with_message = t(  # type: ignore[method-assign]
            "Store.enqueue_with_message (enqueue script, message pushed too)",
            Store.enqueue_with_message,
        )
        Script.__call__ = t("redis-py Script.__call__ (EVALSHA round trip)", Script.__call__)  # type: ignore[method-assign]
    return timers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.producer")
    parser.add_argument("side", choices=sorted(MODULES))
    parser.add_argument("job")
    parser.add_argument("n", type=int)
    parser.add_argument("--mode", choices=("delay", "delay+rt", "group"), default="delay")
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--queue", help="route every job to this queue (apply_async queue=)")
    parser.add_argument("--timers", action="store_true", help="per-call timers (delay mode)")
    args = parser.parse_args(argv)
    if args.timers and args.mode != "delay":
        parser.error("--timers times the delay loop only (--mode delay)")

    task = getattr(importlib.import_module(MODULES[args.side]), args.job)
    options = {"queue": args.queue} if args.queue else {}

    bare = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"]).register_script("return 1")

    def enqueue(count: int, mode: str) -> None:
        if mode == "delay+rt":
            for i in range(count):
                bare()
                task.delay(i)
        elif mode == "group":
            group(task.s(i).set(**options) for i in range(count)).apply_async()
        elif options:
            for i in range(count):
                task.apply_async((i,), **options)
        else:
            for i in range(count):
                task.delay(i)

    timers = timed_pieces(args.side) if args.timers else None
    if args.warmup:
        enqueue(args.warmup, "delay")
    if timers:
        timers.clear()
    client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    before = CommandStats.read(client)
    started = time.perf_counter()
    enqueue(args.n, args.mode)
    seconds = time.perf_counter() - started
    if timers:
        timers.jobs = args.n
    stats = CommandStats.read(client).minus(before)
    scripts, script_usec = stats.scripts()
    # INFO itself (two calls per read) is not the producer's.
    calls = sum(v for k, v in stats.calls.items() if k != "info")
    print(json.dumps({"n": args.n, "seconds": seconds, "scripts": scripts,
                      "script_usec": script_usec, "calls": calls,
                      "commands": {k: v for k, v in stats.calls.items() if v},
                      "timers": timers.as_json() if timers else None}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
