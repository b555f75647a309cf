"""``./run bench [--smoke] [--runs N] [--only 1,2,...] [--success-jobs N] [--output PATH]``.

Runs every scenario against durable-retry and plain Celery on a Redis of its
own and writes the table to docs/PERFORMANCE.md (``--output`` elsewhere).
``--smoke`` runs each scenario tiny, in seconds: it proves the bench works,
its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench import cluster, enqueue, harness, rabbit, state, throughput, timing
from bench.harness import Bench, check_same_config, load
from bench.report import Row, Section, write
from tests.support.worker_process import ROOT

SCENARIOS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11")


@dataclass
class Sizes:
    runs: int = 3
    success_jobs: int = 20_000
    pools: list[str] = field(default_factory=lambda: ["prefork", "solo"])
    retry_jobs: int = 4_000
    countdowns: list[str] = field(default_factory=lambda: ["0s", "1s"])
    memory_jobs: int = 100_000
    cleanup_jobs: int = 300
    precision_jobs: int = 300
    precision_rate: float = 20.0
    recovery_retries: int = 4
    recovery_cap: float = 120.0
    recovery_lease: float = 5.0
    recovery_delay: float = 5.0
    scale_sizes: list[int] = field(default_factory=lambda: [100_000, 1_000_000])
    scale_claim: int = 20_000
    cli_runs: int = 3
    enqueue_jobs: int = 5_000
    group_size: int = 1_000
    death_backlog: int = 10_000
    rabbit_retries: int = 4
    rabbit_lease: float = 5.0
    rabbit_delay: float = 5.0
    cluster_jobs: int = 3_000
    cluster_due: int = 1_000_000
    cluster_claim: int = 20_000


SMOKE = Sizes(
    runs=1, success_jobs=200, retry_jobs=100, memory_jobs=1_000, cleanup_jobs=30,
    precision_jobs=10, precision_rate=20.0, recovery_retries=2, recovery_cap=3.0,
    recovery_lease=2.0, recovery_delay=3.0, scale_sizes=[2_000, 4_000], scale_claim=1_000,
    enqueue_jobs=100, group_size=100, death_backlog=200, rabbit_retries=2, rabbit_lease=2.0,
    rabbit_delay=3.0, cluster_jobs=100, cluster_due=5_000, cluster_claim=500,
)  # fmt: skip

INTRO = [
    "Durability must cost little. Each scenario runs durable-retry and plain Celery in",
    "the same bench run, on one local Redis without persistence, alternating A/B, and",
    "reports medians of the runs. **Ratios are the result; absolute numbers are context**",
    "(this machine is shared and small). Run it again with `./run bench`; `./run bench",
    "--smoke` is its minutes-long version (`./run test -m bench tests/test_bench_smoke.py`).",
    "The **floor** column (scenarios 1 and 2) is a third side in the same rotation: plain",
    "Celery with two bare script round trips around each attempt (bench/floor_jobs.py),",
    "the two the invariants keep, and the layer's kombu client reuse (which speeds up",
    "plain jobs as much), over plain Celery. A bar above its floor cannot be met",
    "by tuning the layer; the distance between the ratio and the floor is the layer's own.",
    "What the scripts themselves cost Redis is counted, not timed, by `python -m",
    "bench.script_cost --against REV` (instructions under valgrind: the same count on a",
    "busy machine as on an idle one), so a change to them is judged apart from the noise.",
]


def run(sizes: Sizes, only: set[str], base: Path | None = None) -> list[Section]:
    """Run the chosen scenarios; returns their sections in order."""
    check_same_config()
    sections: list[Section] = []
    with Bench(base) as bench:
        success = retry = None
        if only & {"1", "3"}:
            print(f"bench: 1. success path (load {load()})", file=sys.stderr)
            section, success = throughput.success_path(
                bench, sizes.success_jobs, sizes.runs, sizes.pools
            )
            sections.append(section)
        if only & {"2", "3"}:
            print(f"bench: 2. retry path (load {load()})", file=sys.stderr)
            section, by_countdown = throughput.retry_path(
                bench, sizes.retry_jobs, sizes.runs, sizes.countdowns
            )
            retry = by_countdown.get("0s")
            sections.append(section)
        costs: dict[str, float] = {}
        memory_sections: list[Section] = []
        if only & {"3", "4"}:
            print(f"bench: 4. memory (load {load()})", file=sys.stderr)
            section, costs = state.memory(bench, sizes.memory_jobs)
            memory_sections = [section, state.cleanup(bench, sizes.cleanup_jobs)]
        if "3" in only and success is not None and retry is not None:
            sections.append(throughput.failure_cost(success, retry, costs))
        if "4" in only:
            sections += memory_sections
        if "5" in only:
            print(f"bench: 5. precision (load {load()})", file=sys.stderr)
            sections.append(timing.precision(bench, sizes.precision_jobs, sizes.precision_rate))
        if "6" in only:
            print(f"bench: 6. recovery (load {load()})", file=sys.stderr)
            sections.append(timing.recovery(
                bench, sizes.recovery_retries, sizes.recovery_cap, sizes.recovery_lease,
                sizes.recovery_delay,
            ))  # fmt: skip
        if "7" in only:
            print(f"bench: 7. scale (load {load()})", file=sys.stderr)
            sections.append(
                state.scale(bench, sizes.scale_sizes, sizes.scale_claim, sizes.cli_runs)
            )
        if "8" in only:
            print(f"bench: 8. enqueue (load {load()})", file=sys.stderr)
            sections.append(enqueue.producer(bench, sizes.enqueue_jobs, sizes.group_size,
                                             sizes.runs))  # fmt: skip
        if "9" in only:
            print(f"bench: 9. copies per worker death (load {load()})", file=sys.stderr)
            sections.append(enqueue.copies_per_death(bench, sizes.death_backlog))
        if "10" in only:
            print(f"bench: 10. recovery on RabbitMQ (load {load()})", file=sys.stderr)
            sections.append(rabbit.recovery_rabbitmq(
                bench, sizes.rabbit_retries, sizes.rabbit_lease, sizes.rabbit_delay, sizes.runs,
            ))  # fmt: skip
        if "11" in only:
            print(f"bench: 11. one Redis against a 3-master cluster (load {load()})",
                  file=sys.stderr)  # fmt: skip
            sections.append(cluster.one_against_three(
                sizes.cluster_jobs, sizes.cluster_due, sizes.cluster_claim, sizes.runs,
            ))  # fmt: skip
    return sections


def rows(sections: list[Section]) -> list[Row]:
    return [row for section in sections for row in section.rows]


def settings_lines(sizes: Sizes) -> list[str]:
    return [
        f"- runs per side: {sizes.runs} (A/B alternating, medians); success path "
        f"{sizes.success_jobs:,} jobs, retry path {sizes.retry_jobs:,} jobs, memory "
        f"{sizes.memory_jobs:,} jobs, scale {', '.join(f'{s:,}' for s in sizes.scale_sizes)} "
        f"due entries, enqueue {sizes.enqueue_jobs:,} jobs and a group of "
        f"{sizes.group_size:,}, worker death with {sizes.death_backlog:,} queued jobs.",
        "- workers: `celery -A bench.jobs|bench.plain_jobs worker -P <pool> -c 2 -E "
        "--without-gossip --without-mingle --without-heartbeat -l INFO` "
        "(tests/support/worker_process.py), one at a time; the jobs are in bench/jobs.py "
        "and bench/plain_jobs.py.",
        "- durable-retry: the defaults of workers/settings.py (sweep 1 s, max countdown "
        "300 s, visibility timeout 3600 s) except a lease of 5 s (bench/harness.py "
        "DURABLE_SETTINGS), unless a scenario says otherwise.",
    ]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="./run bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: minutes in all")
    parser.add_argument("--runs", type=int, help="runs per side (default 3)")
    parser.add_argument("--only", help="comma-separated scenarios, e.g. 1,3 (default: all)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "PERFORMANCE.md")
    parser.add_argument("--success-jobs", type=int, help="jobs per run of scenario 1 (20000)")
    parser.add_argument("--pools", help="comma-separated pools for scenario 1 (prefork,solo)")
    parser.add_argument(
        "--durable-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a DURABLE_* setting for the durable workers (what-if runs)",
    )
    parser.add_argument("--findings", type=Path,
                        help="markdown to include as the findings section")  # fmt: skip
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    unknown = only - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    args.only = only
    args.argv = sys.argv[1:] if argv is None else argv
    return args


def run_and_write(args: argparse.Namespace, base: Path | None = None) -> list[Section]:
    """Run what ``args`` asks for and write the page; returns the sections."""
    sizes = SMOKE if args.smoke else Sizes()
    if args.runs:
        sizes.runs = args.runs
    if args.success_jobs:
        sizes.success_jobs = args.success_jobs
    if args.pools:
        sizes.pools = args.pools.split(",")
    for setting in args.durable_setting:
        name, _, value = setting.partition("=")
        harness.DURABLE_SETTINGS[name] = value
    sections = run(sizes, args.only, base)
    findings = args.findings.read_text().splitlines() if args.findings else []
    command = "./run bench " + " ".join(args.argv)
    write(args.output, sections, command=command.strip(), settings=settings_lines(sizes),
          intro=INTRO, findings=findings)  # fmt: skip
    for row in rows(sections):
        print(f"{row.scenario} {row.metric}: ours {row.ours:.4g} plain {row.plain} "
              f"met {row.met}")  # fmt: skip
    print(f"bench: wrote {args.output}", file=sys.stderr)
    return sections


def main(argv: list[str] | None = None) -> int:
    run_and_write(parse(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
