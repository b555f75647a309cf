"""Scenarios 1-3: the success path, the retry path, and what a failure costs Redis.

Every run publishes all its jobs first, then starts one worker and times it
from its first fetch until the last message is acked (:meth:`Bench.drain`),
the same way on both sides; the sides alternate A/B and the result is the
median of the runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.harness import FLOOR, SIDES, Bench, CommandStats, Drained, load, median
from bench.report import Row, Section

FLOOR_SETTINGS = (
    "The floor side runs in the same rotation: plain Celery's jobs with two bare script "
    "round trips around each attempt (bench/floor_jobs.py), the two the invariants keep "
    "(claim before the body, the outcome before the ack), and the layer's kombu client "
    "reuse (patches/client_reuse.py); the table's floor column is "
    "its figure over plain Celery's."
)


@dataclass
class Runs:
    """Every run of one (job, pool) pair, by side."""

    by_side: dict[str, list[Drained]] = field(
        default_factory=lambda: {s: [] for s in (*SIDES, FLOOR)}
    )

    def rate(self, side: str, attempts_per_job: int = 1) -> float:
        return median([r.per_second * attempts_per_job for r in self.by_side[side]])

    def spread(self, side: str, attempts_per_job: int = 1) -> str:
        rates = sorted(r.per_second * attempts_per_job for r in self.by_side[side])
        return ", ".join(f"{rate:.0f}" for rate in rates)

    def per_job(self, side: str, what: str) -> float:
        """Median per job of a counter: ``scripts``, ``script_usec``, ``cpu_usec``, ``usec``."""
        values = []
        for run in self.by_side[side]:
            stats: CommandStats = run.stats
            calls, usec = stats.scripts()
            value = {
                "scripts": calls, "script_usec": usec, "cpu_usec": stats.cpu * 1e6,
                "usec": sum(stats.usec.values()), "calls": sum(stats.calls.values()),
            }[what]  # fmt: skip
            values.append(value / run.jobs)
        return median(values)


def alternate(
    bench: Bench, jobs: dict[str, str], n: int, runs: int, pool: str = "prefork",
    enqueue: bool = False,
) -> Runs:  # fmt: skip
    """``runs`` rounds of the sides ``jobs`` names (A/B, then B/A, ...) on job ``jobs[side]``."""
    sides = tuple(jobs)
    result = Runs()
    for round_ in range(runs):
        order = sides if round_ % 2 == 0 else tuple(reversed(sides))
        for side in order:
            result.by_side[side].append(
                bench.drain(side, jobs[side], n, pool=pool, enqueue=enqueue)
            )
    return result


def success_path(bench: Bench, n: int, runs: int, pools: list[str]) -> tuple[Section, Runs]:
    section = Section(
        "1. Success path", load_before=load(),
        settings=f"{n:,} jobs with an empty body per run, {runs} runs per side and pool, "
        "alternating A/B; prefork runs 2 processes (one per core), solo one. Both sides: "
        "JSON, acks_late, reject_on_worker_lost, prefetch multiplier 4, task events and "
        "task-sent events on, no result backend, INFO logs to a file. Jobs are enqueued "
        "before the worker starts with `noop.delay(i)` from a producer process "
        "(bench/producer.py), so the durable side's records are written at enqueue, as in "
        "production; the round trips per job are counted from after publishing, i.e. the "
        "worker's own. " + FLOOR_SETTINGS,
    )  # fmt: skip
    prefork_runs = Runs()
    for pool in pools:
        runs_ = alternate(bench, {"durable": "noop", "plain": "noop", FLOOR: "noop"}, n, runs,
                          pool, enqueue=True)  # fmt: skip
        if pool == "prefork":
            prefork_runs = runs_
        # Issue 13's bars: solo 0.90x; prefork 0.95x, which it met and asks to keep.
        least = "0.95" if pool == "prefork" else "0.90"
        section.rows.append(Row(
            "1", f"throughput, {pool} pool", runs_.rate("durable"), runs_.rate("plain"),
            unit="jobs/s", bar=f">= {least}x", rule=f"ratio>={least}", floor=runs_.rate(FLOOR),
        ))  # fmt: skip
        section.details.append(
            f"- {pool}: jobs/s per run, durable-retry: {runs_.spread('durable')}; "
            f"plain Celery: {runs_.spread('plain')}; floor: {runs_.spread(FLOOR)} (its "
            f"script calls per job: {runs_.per_job(FLOOR, 'scripts'):.2f})"
        )
        section.rows.append(Row(
            "1", f"Redis round trips of the layer per job ({pool})",
            runs_.per_job("durable", "scripts"), None, bar="2 (claim + succeed)",
            rule="<=2.05", note="0 (no state)",
        ))  # fmt: skip
        section.rows.append(Row(
            "1", f"Redis CPU per job, whole server ({pool})",
            runs_.per_job("durable", "cpu_usec"), runs_.per_job("plain", "cpu_usec"), unit="µs",
            bar="<= 1.3x", rule="ratio<=1.3", floor=runs_.per_job(FLOOR, "cpu_usec"),
        ))  # fmt: skip
    section.load_after = load()
    return section, prefork_runs


def retry_path(
    bench: Bench, n: int, runs: int, countdowns: list[str]
) -> tuple[Section, dict[str, Runs]]:
    section = Section(
        "2. Retry path", load_before=load(),
        settings=f"{n:,} jobs per run, each fails once (ConnectionError) and then "
        f"succeeds: {2 * n:,} attempts; prefork, 2 processes; {runs} runs per side. "
        "durable-retry: a policy with a fixed delay (no jitter); plain Celery: "
        "autoretry_for=(ConnectionError,), retry_kwargs countdown, i.e. its own "
        "self.retry. " + FLOOR_SETTINGS,
    )  # fmt: skip
    by_countdown: dict[str, Runs] = {}
    for countdown in countdowns:
        job = f"fail_once_{countdown}"
        runs_ = alternate(bench, {"durable": job, "plain": job, FLOOR: job}, n, runs)
        by_countdown[countdown] = runs_
        section.rows.append(Row(
            "2", f"attempts per second, countdown {countdown}", runs_.rate("durable", 2),
            runs_.rate("plain", 2), unit="attempts/s", bar=">= 0.95x", rule="ratio>=0.95",
            floor=runs_.rate(FLOOR, 2),
        ))  # fmt: skip
        section.rows.append(Row(
            "2", f"sweeper re-publishes per job, countdown {countdown}",
            median([r.swept / r.jobs for r in runs_.by_side["durable"]]), None,
            bar="0 (a live worker's retries)", rule="<=0.01", note="0",
        ))  # fmt: skip
        section.details.append(
            f"- countdown {countdown}: attempts/s per run, durable-retry: "
            f"{runs_.spread('durable', 2)}; plain Celery: {runs_.spread('plain', 2)}; "
            f"floor: {runs_.spread(FLOOR, 2)} (its script calls per attempt: "
            f"{runs_.per_job(FLOOR, 'scripts') / 2:.2f})"
        )
    section.load_after = load()
    return section, by_countdown


def failure_cost(success: Runs, retry: Runs, script_usec: dict[str, float]) -> Section:
    """Scenario 3 from the runs of 1 and 2: what one failure adds to a success."""
    section = Section(
        "3. Redis cost per failure", load_before=load(),
        settings="From the prefork runs of scenarios 1 and 2 (countdown 0s): per job, the "
        "retry run minus the success run, by INFO commandstats (Lua script calls and their "
        "µs) and INFO cpu (the whole Redis process, broker included). Each failure adds a "
        "failed attempt (claim + fail) and a retry attempt (claim), where a success has "
        "claim + succeed.",
    )  # fmt: skip
    trips = retry.per_job("durable", "scripts") - success.per_job("durable", "scripts")
    usec = retry.per_job("durable", "script_usec") - success.per_job("durable", "script_usec")
    section.rows += [
        Row("3", "Redis round trips of the layer per failure", trips, None, bar="<= 2",
            rule="<=2.05", note="0 (no state)"),
        Row("3", "Redis CPU of the layer per failure (commandstats)", usec,
            retry.per_job("plain", "usec") - success.per_job("plain", "usec"), unit="µs",
            bar="<= 15 µs", rule="<=15"),
        Row("3", "Redis CPU per failure, whole server (INFO cpu)",
            retry.per_job("durable", "cpu_usec") - success.per_job("durable", "cpu_usec"),
            retry.per_job("plain", "cpu_usec") - success.per_job("plain", "cpu_usec"),
            unit="µs"),
    ]  # fmt: skip
    section.details.append(
        "- plain Celery's column for commandstats is every command its retry adds (broker "
        "only: it keeps no state)."
    )
    if script_usec:
        parts = ", ".join(f"{name} {value:.1f} µs" for name, value in script_usec.items())
        section.details.append(
            f"- Each script alone (100k pipelined calls, scenario 4's runs): {parts}."
        )
    section.load_after = load()
    return section
