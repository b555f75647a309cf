"""Where a durable job's time goes against plain Celery's: CPU per job, not jobs/s.

``python -m bench.cost [--jobs 3000] [--runs 3] [--variants plain,durable,...]
[--job noop|fail_once_0s] [--pool solo|prefork]``

Each run: the jobs are enqueued first (``JOB.delay`` from a producer process, as
scenario 1 does: the durable side's records are written at enqueue), then one
worker (``celery -A bench.cost_probe``, solo by default) starts and drains them.
``--job fail_once_0s`` is scenario 2's job: each fails once and retries at once,
so a job is two attempts (durable-retry: claim + fail, then claim + succeed;
plain Celery: its own ``self.retry``). ``--pool prefork`` runs scenarios 1 and 2's
pool (2 processes). From the worker's first fetch until the last ack the tool reads

- the worker's CPU (utime+stime from ``/proc/<pid>/task/*/stat``), main thread
  (with ``prefork``: and every pool process) and the main process' other threads
  (the durable side's sweeper and lease keeper) apart, and the main thread's
  context switches (voluntary: it blocked; involuntary: it was preempted);
- the Redis server's CPU (``INFO cpu``) and commands (``INFO commandstats``), minus
  the tool's own polling (one pipelined LLEN+HLEN every 10 ms);
- the wall time.

Variants (see :mod:`bench.cost_probe`) run in the same rotation as the two sides,
so a what-if is measured against the load of its neighbours. On a loaded machine
wall time is noisy; CPU per job is what the code costs and is much steadier.
``--json`` writes every run's figures for the report.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import QUEUE, Bench, CommandStats
from tests.support.worker_process import WorkerProcess

TICK = os.sysconf("SC_CLK_TCK")

# name -> (side, flags for bench.cost_probe)
VARIANTS: dict[str, tuple[str, str]] = {
    "plain": ("plain", ""),
    "durable": ("durable", ""),
    "plain+call": ("plain", "call"),
    "plain+request": ("plain", "request"),
    "plain+log": ("plain", "log"),
    "plain+2rt": ("plain", "rt2"),
    "plain+reuse": ("plain", "reuse"),
    "floor": ("plain", "reuse,rt2"),  # the bench's floor side (bench/floor_jobs.py)
    "plain+all": ("plain", "call,request,log,rt2"),
    "durable-log": ("durable", "nolog"),
    "durable-reuse": ("durable", "noreuse"),
    "durable-fields": ("durable", "fields"),
    "durable+timers": ("durable", "timers"),
    "durable+timers-reuse": ("durable", "timers,noreuse"),
}
POLL_COMMANDS = ("llen", "hlen", "info", "config|resetstat", "flushall", "config")


def pool_processes(pid: int) -> list[int]:
    """The pool processes of a prefork worker (none for solo)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def stat_cpu(stat: Path) -> float:
    """utime + stime (s) of a ``/proc/.../stat`` file: a process' threads, or one
    thread's (0 once it is gone)."""
    try:
        text = stat.read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu(pid: int) -> tuple[float, float, int, int]:
    """(main thread + pool processes' CPU s, other threads CPU s, voluntary,
    involuntary switches of main)."""
    main = sum(stat_cpu(Path(f"/proc/{child}/stat")) for child in pool_processes(pid))
    other = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        cpu = stat_cpu(task / "stat")
        if int(task.name) == pid:
            main += cpu
        else:
            other += cpu
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    switches = {k: int(v) for k, _, v in (line.partition(":\t") for line in status)
                if k in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")}  # fmt: skip
    return main, other, switches["voluntary_ctxt_switches"], switches[
        "nonvoluntary_ctxt_switches"]  # fmt: skip


@dataclass
class Run:
    variant: str
    jobs: int
    seconds: float
    main_cpu: float
    other_cpu: float
    voluntary: int
    involuntary: int
    redis_cpu: float
    commands: dict[str, int]
    load: tuple[float, float]
    # Redis' own µs in each command (commandstats): a script's inner calls
    # are counted twice, in EVALSHA and under their own names.
    command_usec: dict[str, int] = field(default_factory=dict)
    timers: dict[str, Any] = field(default_factory=dict)

    def per_job_us(self, value: float) -> float:
        return value * 1e6 / self.jobs


def drain(
    bench: Bench, variant: str, n: int, count: int, job: str = "noop", pool: str = "solo"
) -> Run:
    side, flags = VARIANTS[variant]
    bench.flush()
    bench.produce(side, job, n)
    if bench.client.llen(QUEUE) != n:
        raise RuntimeError(f"expected {n} messages in the queue")
    out = bench.base / f"timers-{count}.json"
    env = bench.env(side)
    env.update(BENCH_COST_SIDE=side, BENCH_COST_FLAGS=flags, BENCH_COST_OUT=str(out),
               BENCH_COST_JOB=job)  # fmt: skip
    worker = WorkerProcess(env, bench.base / f"cost-{variant}-{count}.log",
                           module="bench.cost_probe", name=f"c{count}", pool=pool,
                           concurrency=1 if pool == "solo" else 2)  # fmt: skip
    load0 = os.getloadavg()[0]
    worker.start(wait=False)
    try:
        deadline = time.monotonic() + 900
        while bench.client.llen(QUEUE) >= n:
            Bench._check(worker, deadline)
            time.sleep(0.002)
        started = time.monotonic()
        cpu0 = thread_cpu(worker.pid)
        before = CommandStats.read(bench.client)
        while bench.outstanding():
            Bench._check(worker, deadline)
            time.sleep(0.01)
        seconds = time.monotonic() - started
        cpu1 = thread_cpu(worker.pid)
        stats = CommandStats.read(bench.client).minus(before)
        time.sleep(0.3 if "timers" in flags else 0)  # the last dump (every 250 jobs)
        timers = json.loads(out.read_text()) if out.exists() else {}
    finally:
        worker.kill()
    commands = {k: v for k, v in stats.calls.items() if v and k not in POLL_COMMANDS}
    command_usec = {k: stats.usec.get(k, 0) for k in commands}
    return Run(
        variant=variant, jobs=n, seconds=seconds, main_cpu=cpu1[0] - cpu0[0],
        other_cpu=cpu1[1] - cpu0[1], voluntary=cpu1[2] - cpu0[2],
        involuntary=cpu1[3] - cpu0[3], redis_cpu=stats.cpu, commands=commands,
        command_usec=command_usec,
        load=(load0, os.getloadavg()[0]), timers=timers,
    )  # fmt: skip


def med(runs: list[Run], what: str) -> float:
    values = []
    for r in runs:
        value = {
            "wall": r.seconds, "main_cpu": r.main_cpu, "other_cpu": r.other_cpu,
            "off_cpu": r.seconds - r.main_cpu, "redis_cpu": r.redis_cpu,
            "voluntary": r.voluntary / 1e6, "involuntary": r.involuntary / 1e6,
            "commands": sum(r.commands.values()) / 1e6,
        }[what]  # fmt: skip
        values.append(r.per_job_us(value))
    return statistics.median(values)


def timer_rows(runs: list[Run]) -> list[str]:
    """Per timer: median µs per job of wall, CPU and wall - CPU (waiting)."""
    rows: dict[str, list[tuple[float, float, float]]] = {}
    overhead = [0.0, 0.0]
    for r in runs:
        data = r.timers
        if not data.get("jobs"):
            continue
        jobs = data["jobs"]
        overhead = data.get("overhead_ns", overhead)
        for name, (calls, wall, cpu) in data["totals"].items():
            rows.setdefault(name, []).append((calls / jobs, wall / jobs / 1e3, cpu / jobs / 1e3))
    lines = [f"  per-call timers (one timer adds {overhead[0] / 1e3:.2f} µs wall, "
             f"{overhead[1] / 1e3:.2f} µs CPU; not subtracted):"]  # fmt: skip
    for name, values in rows.items():
        calls = statistics.median(v[0] for v in values)
        wall = statistics.median(v[1] for v in values)
        cpu = statistics.median(v[2] for v in values)
        lines.append(f"    {name:42} {calls:5.2f}/job  wall {wall:7.1f}  cpu {cpu:7.1f}  "
                     f"wait {wall - cpu:7.1f} µs")  # fmt: skip
    return lines


def report(by_variant: dict[str, list[Run]]) -> list[str]:
    lines = ["variant           runs  jobs/s  wall/job  main CPU  off-CPU  other thr  "
             "Redis CPU  cmds/job  vol.sw  invol.sw  (µs per job; medians)"]  # fmt: skip
    for variant, runs in by_variant.items():
        if not runs:
            continue
        rate = statistics.median(r.jobs / r.seconds for r in runs)
        lines.append(
            f"{variant:17} {len(runs):4}  {rate:6.0f}  {med(runs, 'wall'):8.0f}  "
            f"{med(runs, 'main_cpu'):8.0f}  {med(runs, 'off_cpu'):7.0f}  "
            f"{med(runs, 'other_cpu'):9.1f}  {med(runs, 'redis_cpu'):9.1f}  "
            f"{med(runs, 'commands'):8.2f}  {med(runs, 'voluntary'):6.2f}  "
            f"{med(runs, 'involuntary'):8.2f}"
        )
    for variant, runs in by_variant.items():
        per_run = ", ".join(f"{r.per_job_us(r.main_cpu):.0f}/{r.per_job_us(r.seconds):.0f}"
                            f" (load {r.load[0]:.1f})" for r in runs)  # fmt: skip
        lines.append(f"  {variant}: main CPU/wall µs per job per run: {per_run}")
        if runs:
            commands: dict[str, float] = {}
            for name in {k for r in runs for k in r.commands}:
                commands[name] = statistics.median(r.commands.get(name, 0) / r.jobs
                                                   for r in runs)  # fmt: skip
            shown = ", ".join(
                f"{k} {v:.2f}" for k, v in sorted(commands.items(), key=lambda kv: -kv[1]) if v
            )
            lines.append(f"    Redis commands per job: {shown}")
            usec = {name: statistics.median(r.command_usec.get(name, 0) / r.jobs for r in runs)
                    for name in commands}  # fmt: skip
            shown = ", ".join(f"{k} {v:.1f}" for k, v in
                              sorted(usec.items(), key=lambda kv: -kv[1]) if v >= 0.05)  # fmt: skip
            lines.append(f"    Redis µs per job by command (scripts' inner calls also "
                         f"in evalsha): {shown}")  # fmt: skip
        if any(r.timers for r in runs):
            lines += timer_rows(runs)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost")
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--variants",
        default="plain,durable",
        help=f"comma-separated, in rotation order: {', '.join(VARIANTS)}",
    )
    parser.add_argument("--job", choices=("noop", "fail_once_0s"), default="noop",
                        help="noop: the success path; fail_once_0s: the retry path")
    parser.add_argument("--pool", choices=("solo", "prefork"), default="solo")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.pool == "prefork" and any("timers" in VARIANTS[v][1] for v in args.variants.split(",")
                                      if v in VARIANTS):
        parser.error("timers are written by a solo worker only (use --pool solo)")
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            parser.error(f"unknown variant {v!r}")
    by_variant: dict[str, list[Run]] = {v: [] for v in variants}
    count = 0
    print(f"job {args.job}, {args.pool} pool; load before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with Bench() as bench:
        for round_ in range(args.runs):
            order = variants if round_ % 2 == 0 else list(reversed(variants))
            for variant in order:
                count += 1
                run = drain(bench, variant, args.jobs, count, args.job, args.pool)
                by_variant[variant].append(run)
                print(f"round {round_ + 1} {variant}: {run.jobs / run.seconds:.0f} jobs/s, "
                      f"main CPU {run.per_job_us(run.main_cpu):.0f} µs/job, "
                      f"load {run.load[0]:.1f}", flush=True)  # fmt: skip
                if args.json:
                    args.json.write_text(
                        json.dumps(
                            {k: [asdict(r) for r in v] for k, v in by_variant.items()}, indent=1
                        )
                    )
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n".join(report(by_variant)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
