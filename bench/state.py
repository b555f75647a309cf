"""Scenarios 4 and 7, and the cost of each script: the job state in Redis itself.

Jobs are made by the real scripts through the real :class:`workers.store.Store`
methods: :class:`RecordingStore` lets those methods build each call's keys and
arguments, then sends the calls pipelined (a worker sends them one by one;
pipelining only makes 100,000 of them quick to set up).
"""

from __future__ import annotations

import os
import random
import secrets
import subprocess
import sys
import time
from typing import Any

from bench.harness import Bench, CommandStats, load, median
from bench.report import Row, Section
from policies import Failure, decide, parse_policy
from workers.core.failures import failure_from_exception
from workers.core.outcomes import Payload
from workers.core.records import DEFAULT_HISTORY_ATTEMPTS, history_from_fields
from workers.core.store import Store
from workers.ops.control import Control

FAKE_REPLIES: dict[str, list[Any]] = {
    "claim": ["ok", 0], "succeed": ["ok", 0], "fail": ["retry", 0, 0],
}  # fmt: skip
RETENTION_MS = 7 * 86_400_000
LEASE_MS = 30_000
TASK = "bench.jobs.fail_once_1s"
POLICY = parse_policy(
    {"duration": "off", "backoff": {"initial": "1s", "factor": 1, "max": "1s", "jitter": "none"}},
    name="bench-retry-1s",
)


class RecordingStore(Store):
    """A store whose script calls are recorded, then sent in pipelines by :meth:`replay`."""

    def __init__(self, client: Any, prefix: str = "durable", short_fields: bool = False) -> None:
        super().__init__(client, prefix, short_fields=short_fields)
        self.calls: list[tuple[str, list[str], list[Any]]] = []

    def _run(self, name: str, keys: list[str], args: list[Any], client: Any = None) -> Any:
        self.calls.append((name, keys, args))
        return FAKE_REPLIES[name]

    def replay(self, batch: int = 1000) -> list[Any]:
        replies: list[Any] = []
        calls, self.calls = self.calls, []
        for start in range(0, len(calls), batch):
            pipe = self.redis.pipeline(transaction=False)
            for name, keys, args in calls[start : start + batch]:
                self._scripts[name](keys=keys, args=args, client=pipe)
            replies += pipe.execute()
        return replies


def job_ids(n: int, prefix: str = "") -> list[str]:
    rng = random.Random(n)
    return [f"{prefix}{rng.getrandbits(128):032x}" for _ in range(n)]


def typical_failure() -> tuple[Failure, str]:
    """The failure text and the decision's reason a real attempt would store."""
    failure = failure_from_exception(ConnectionError("upstream refused the connection"))
    history = history_from_fields({"attempt": "1", "streak_base": "0"})
    decision = decide(POLICY, history, failure, time.time(), random.Random(0))
    return failure, decision.reason


def _phase(bench: Bench, store: RecordingStore, expect: str) -> float:
    """Replay the recorded calls; µs of script time per call."""
    count = len(store.calls)
    before = CommandStats.read(bench.client)
    replies = store.replay()
    _, usec = CommandStats.read(bench.client).minus(before).scripts()
    bad = [r for r in replies if str(r[0]) != expect]
    if bad:
        raise RuntimeError(f"expected {expect!r} replies, got e.g. {bad[0]!r}")
    return usec / count


def make_retrying(
    bench: Bench, store: RecordingStore, ids: list[str], delay_ms: int, grace_ms: int,
    texts: tuple[str, str] | None = None, history: int = DEFAULT_HISTORY_ATTEMPTS,
) -> dict[str, float]:  # fmt: skip
    """Claim attempt 1 of each job and fail it with a retry: returns µs per script.

    ``texts`` replaces the stored (error, reason) texts (the what-if variants);
    ``history``: attempts of history each job keeps (``DURABLE_HISTORY_ATTEMPTS``).
    """
    failure, reason = typical_failure()
    error = failure.message
    if texts is not None:
        error, reason = texts
    # A claim token per delivery, as a worker makes them (task.py): the record keeps it.
    tokens = {job_id: secrets.token_hex(4) for job_id in ids}
    for job_id in ids:
        payload = Payload(f"[{len(job_id)}]", "{}", "celery")
        store.claim(job_id, 1, task=TASK, policy=POLICY.name, owner="bench@host:4242",
                    lease_ms=LEASE_MS, payload=payload, token=tokens[job_id])  # fmt: skip
    claim = _phase(bench, store, "ok")
    for job_id in ids:
        store.fail(
            job_id, 1, "bench@host:4242", event=failure.event.value, error=error, reason=reason,
            give_up=False, delay_ms=delay_ms, sweeper_grace_ms=grace_ms, max_retrying=None,
            retention_ms=RETENTION_MS, history=history, token=tokens[job_id],
        )  # fmt: skip
    fail = _phase(bench, store, "retry")
    return {"claim (first attempt)": claim, "fail (retry)": fail}


def memory(bench: Bench, n: int) -> tuple[Section, dict[str, float]]:
    section = Section(
        "4. Memory per retrying job", load_before=load(),
        settings=f"{n:,} jobs made retrying by the real claim and fail scripts (a realistic "
        "record: task, policy, args, first failure, error text, due time; a waiting job keeps "
        "no decision reason); "
        "INFO memory used_memory before and after, divided by the number of jobs. Then "
        "every job's retry attempt is claimed and succeeds, to time each script.",
    )  # fmt: skip
    bench.flush()
    store = RecordingStore(bench.client)
    ids = job_ids(n)
    before = int(bench.client.info("memory")["used_memory"])
    costs = make_retrying(bench, store, ids, delay_ms=1000, grace_ms=LEASE_MS)
    after = int(bench.client.info("memory")["used_memory"])
    per_job = (after - before) / n
    sample = ids[:: max(1, n // 200)]
    pipe = bench.client.pipeline(transaction=False)
    for job_id in sample:
        pipe.memory_usage(store.keys.job(job_id), samples=0)
    hash_bytes = median([float(v) for v in pipe.execute()])
    due_bytes = float(bench.client.memory_usage(store.keys.due, samples=0) or 0) / n
    encoding = bench.client.object("encoding", store.keys.job(ids[0]))
    fields = bench.client.hgetall(store.keys.job(ids[0]))
    longest = max(fields.items(), key=lambda item: len(item[1]))
    section.rows.append(Row(
        "4", f"Redis memory per retrying job, as stored by default ({n:,} jobs; 20 attempts "
        "of history, 1 so far)", per_job, None, unit="B", bar="bounded", note="0 (no state)",
    ))  # fmt: skip
    section.details += [
        f"- used_memory grew by {after - before:,} B for {n:,} jobs: {per_job:.0f} B each. "
        f"A job hash alone: {hash_bytes:.0f} B (MEMORY USAGE, median of {len(sample)}; "
        f"encoding {encoding}, {len(fields)} fields, the longest `{longest[0]}` of "
        f"{len(longest[1])} characters); its due-set entry: {due_bytes:.0f} B.",
    ]
    section.details += memory_variants(bench, min(n, 20_000))
    # Issue 13's bar is for history off; short names are the setting that meets it.
    from bench import memory_whatif

    for label, short, bar, rule in (
        ("history off, long field names (the default)", False, "", ""),
        ("history off, short field names (DURABLE_RECORD_FIELDS=short)", True,
         "<= 600 B", "<=600"),
    ):  # fmt: skip
        bytes_each = memory_whatif.bytes_per_job(bench, n, history=0, short=short)
        section.rows.append(Row("4", f"Redis memory per retrying job, {label} ({n:,} jobs)",
                                bytes_each, None, unit="B", bar=bar, rule=rule,
                                note="0 (no state)"))  # fmt: skip
    for job_id in ids:
        # With the payload, as a delivery whose record is gone sends it.
        store.claim(job_id, 2, task=TASK, policy=POLICY.name, owner="bench@host:4242",
                    lease_ms=LEASE_MS, payload=Payload())  # fmt: skip
    costs["claim (retry attempt)"] = _phase(bench, store, "ok")
    for job_id in ids:
        store.succeed(job_id, 2, "bench@host:4242", RETENTION_MS)
    costs["succeed"] = _phase(bench, store, "ok")
    section.load_after = load()
    return section, costs


def memory_variants(bench: Bench, n: int) -> list[str]:
    """What-ifs for the 600 B bar: other layouts, long errors (bench/memory_whatif.py)."""
    from bench import memory_whatif

    lines = [f"- what-if, {n:,} jobs each, bytes per retrying job:"]
    for label, options in memory_whatif.VARIANTS:
        lines.append(f"  - {label}: {memory_whatif.bytes_per_job(bench, n, **options):.0f} B")
    return lines


def cleanup(bench: Bench, n: int) -> Section:
    """Every job ends; after the retention and the sweeper's trim, no per-job key is left."""
    retention = 2.0
    section = Section(
        "4b. Nothing left behind", load_before=load(),
        settings=f"{n:,} jobs through a real worker (prefork, 2): a third succeed, a third "
        "fail once then succeed, a third give up (Permanent); DURABLE_RETENTION and "
        f"DURABLE_SUCCEEDED_RETENTION = {retention:g}s; after the records expire, one "
        "sweeper trim (Store.trim_ended, which each sweeper runs every minute).",
    )  # fmt: skip
    bench.flush()
    kinds = ["ok", "once", "dead"]
    settings = {"DURABLE_RETENTION": str(retention), "DURABLE_SUCCEEDED_RETENTION": str(retention)}
    store = Store(bench.client)
    with bench.running("durable", settings=settings):
        bench.publish("durable", "cleanup_mix", [(kinds[i % 3],) for i in range(n)])
        deadline = time.monotonic() + 300
        while True:
            sizes = store.index_sizes()
            # Not "succeeded + dead >= n": with a 2 s retention the sweepers trim
            # early jobs' entries before a loaded machine finishes the last ones.
            waiting = sizes["due"] + sizes["unclaimed"] + sizes["leases"] + sizes["parked"]
            if not waiting and not bench.outstanding():
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"cleanup jobs did not end: {sizes}")
            time.sleep(0.1)
    time.sleep(retention + 1.0)
    trimmed = store.trim_ended()
    left = sorted(bench.client.scan_iter(match=f"{store.keys.prefix}:*", count=1000))
    per_job = [key for key in left if key.startswith(f"{store.keys.prefix}:job:")]
    entries = sum(store.index_sizes().values())
    section.rows.append(Row(
        "4", "per-job keys and index entries left after retention + trim",
        float(len(per_job) + entries), None, bar="0", rule="<=0", note="n/a",
    ))  # fmt: skip
    fixed = ", ".join(f"`{key}` ({bench.client.type(key)})" for key in left if key not in per_job)
    section.details.append(
        f"- the trim dropped {trimmed:,} index entries; keys left: {len(left)} "
        f"({len(per_job)} job records), all fixed-size: {fixed or 'none'}."
    )
    section.load_after = load()
    return section


def fill_due(bench: Bench, n: int, real: int) -> list[str]:
    """``real`` retrying jobs made by the scripts, due now, then filler entries up to ``n``."""
    bench.flush()
    store = RecordingStore(bench.client)
    ids = job_ids(real)
    make_retrying(bench, store, ids, delay_ms=0, grace_ms=0)
    later = bench.now_ms() + 1
    filler = job_ids(n - real, prefix="f")
    for start in range(0, len(filler), 100_000):
        pipe = bench.client.pipeline(transaction=False)
        chunk = filler[start : start + 100_000]
        for i in range(0, len(chunk), 1000):
            pipe.zadd(store.keys.due, {job_id: later for job_id in chunk[i : i + 1000]})
        pipe.execute()
    time.sleep(0.01)
    return ids


def scale(bench: Bench, sizes: list[int], claim: int, cli_runs: int = 3) -> Section:
    section = Section(
        "7. Scale", load_before=load(),
        settings=f"The due set filled with each size: the first {claim:,} entries are real "
        "retrying jobs (made by the scripts), the rest filler entries due after them. Claim "
        "rate: the sweeper's own calls (take_due of 500, then dispatched for each) until "
        f"{claim:,} jobs are claimed, without publishing. `retryctl list`: "
        "workers.ops.control.Control.list_jobs (what the command runs, median of 5) and the whole "
        f"command in a new process (median of {cli_runs}).",
    )  # fmt: skip
    rates: list[float] = []
    for size in sizes:
        fill_due(bench, size, real=claim + 500)
        store = Store(bench.client)
        in_process = []
        control = Control(store, retention=0)
        for _ in range(5):
            started = time.perf_counter()
            records = control.list_jobs(limit=50)
            in_process.append((time.perf_counter() - started) * 1000)
        if len(records) != 50:
            raise RuntimeError(f"list_jobs returned {len(records)} jobs")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
        command = [sys.executable, "-m", "workers.ops.cli", "--redis-url", bench.url, "list"]
        wall = []
        for _ in range(cli_runs):
            started = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True, timeout=120)
            wall.append((time.perf_counter() - started) * 1000)
        claimed = 0
        started = time.perf_counter()
        while claimed < claim:
            _, ids = store.take_due(500, redispatch_ms=LEASE_MS)
            jobs = store.dispatched(ids)
            claimed += sum(1 for job in jobs if job.state == "queued")
            if not ids:
                raise RuntimeError("the due set ran dry")
        rate = claimed / (time.perf_counter() - started)
        rates.append(rate)
        section.rows += [
            Row("7", f"sweeper claim rate, {size:,} due", rate, None, unit="jobs/s",
                note="n/a (no due set)"),
            Row("7", f"`retryctl list` (list_jobs) at {size:,} due", median(in_process),
                None, unit="ms", note="n/a"),
            Row("7", f"`retryctl list` command, new process, at {size:,} due", median(wall),
                None, unit="ms", note="n/a"),
        ]  # fmt: skip
    if len(rates) >= 2:
        section.rows.append(Row(
            "7", f"claim rate at {sizes[-1]:,} / at {sizes[0]:,}", rates[-1] / rates[0], None,
            bar=">= 0.90 (within 10%)", rule=">=0.90", note="n/a",
        ))  # fmt: skip
    bench.flush()
    section.load_after = load()
    return section
