"""Scenarios 5 and 6: how punctually retries start, and how fast a dead worker's jobs return.

Body start times are Redis' clock (``bench.records``), as due times are.
"""

from __future__ import annotations

import socket
import time

from bench.harness import Bench, load, percentile
from bench.records import LATENESS_KEY, start_key
from bench.report import Row, Section
from workers.core.store import Store


def _lateness(bench: Bench, side: str, n: int, rate: float,
              settings: dict[str, str] | None = None) -> list[float]:  # fmt: skip
    bench.flush()
    with bench.running(side, settings=settings):
        bench.publish(side, "late_1s", [(i,) for i in range(n)], pace=rate)
        deadline = time.monotonic() + 120 + n / rate
        while bench.client.llen(LATENESS_KEY) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{side}: only {bench.client.llen(LATENESS_KEY)} of {n} retries")
            time.sleep(0.1)
    return [float(v) for v in bench.client.lrange(LATENESS_KEY, 0, -1)]


def precision(bench: Bench, n: int, rate: float) -> Section:
    section = Section(
        "5. Scheduling precision", load_before=load(),
        settings=f"{n} jobs published at {rate:g}/s to an otherwise idle worker (prefork, 2), "
        "each failing once with a 1 s delay; lateness = the retry body's start minus its due "
        "time, both on Redis' clock. Countdown: the retry rides a broker countdown (both "
        "sides). Sweeper: DURABLE_MAX_COUNTDOWN=0, so the retry waits only in the due set "
        "and a sweeper (every DURABLE_SWEEP_SECONDS = 1 s) publishes it.",
    )  # fmt: skip
    ours = _lateness(bench, "durable", n, rate)
    plain = _lateness(bench, "plain", n, rate)
    swept = _lateness(bench, "durable", n, rate, {"DURABLE_MAX_COUNTDOWN": "0"})
    for p in (50, 99):
        section.rows.append(Row(
            "5", f"countdown retry lateness p{p}", percentile(ours, p), percentile(plain, p),
            unit="ms", bar="p99 < 50 ms" if p == 99 else "", rule="<=50" if p == 99 else "",
        ))  # fmt: skip
    for p in (50, 99):
        section.rows.append(Row(
            "5", f"sweeper-dispatched retry lateness p{p}", percentile(swept, p), None,
            unit="ms", bar="p99 < sweep 1000 ms + 50 ms" if p == 99 else "",
            rule="<=1050" if p == 99 else "", note="n/a (no sweeper)",
        ))  # fmt: skip
    section.details.append(
        f"- max lateness: countdown {max(ours):.0f} ms (plain Celery {max(plain):.0f} ms); "
        f"sweeper {max(swept):.0f} ms."
    )
    section.load_after = load()
    return section


def _recover(bench: Bench, side: str, retries: int, cap: float,
             settings: dict[str, str], delay: float) -> tuple[list[float], float, str]:  # fmt: skip
    """Kill a worker holding a running job and countdown retries; delays until they run on B.

    Returns (each job's delay in seconds, or inf if not within ``cap``; the
    running job first), the cap, and a note on what was held at the kill.
    """
    bench.flush()
    a = bench.worker(side, name="a", settings=settings)
    b = bench.worker(side, name="b", settings=settings, queues="bench-idle")
    running, *countdown = bench.publish_ids(side, "recovering", [(60.0,)] + [(0.0,)] * retries)
    store = Store(bench.client)
    deadline = time.monotonic() + 60
    while True:
        started, due_ms = where_jobs_are(bench, store, side, running, countdown, delay)
        if started and len(due_ms) == len(countdown) and bench.outstanding() == 1 + retries:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{side}: worker A did not take the jobs:\n{a.log_text()[-2000:]}")
        time.sleep(0.05)
    # B starts consuming now, while A holds every message: the queue itself is empty.
    host = f"{b.name}@{socket.gethostname()}"
    replies = bench.control_app().control.add_consumer("celery", destination=[host], reply=True)
    if not replies:
        raise RuntimeError(f"worker {host} did not answer add_consumer")
    a.kill()
    killed_ms = bench.now_ms()
    delays: list[float] = []
    end = time.monotonic() + cap
    for job_id in [running, *countdown]:
        while True:
            second = bench.client.hget(start_key(job_id), "2")
            if second is not None:
                at, host_ran = second.split("|", 1)
                if not host_ran.startswith(b.name):
                    raise RuntimeError(f"{side}: job {job_id} ran again on {host_ran}, not B")
                since = max(killed_ms, due_ms.get(job_id, killed_ms))
                delays.append((float(at) - since) / 1000)
                break
            if time.monotonic() > end:
                delays.append(float("inf"))
                break
            time.sleep(0.05)
    b.kill()
    held = (
        f"{retries} countdown retries due {min(due_ms.values()) - killed_ms:.0f}-"
        f"{max(due_ms.values()) - killed_ms:.0f} ms after the kill"
    )
    return delays, cap, held


def where_jobs_are(
    bench: Bench, store: Store, side: str, running: str, countdown: list[str], delay: float
) -> tuple[bool, dict[str, float]]:
    """Whether the running job's body started, and each countdown retry's due time
    (ms) once its first attempt failed: from the record (durable) or from the first
    attempt's start plus the delay (plain Celery keeps no record)."""
    started = bool(bench.client.hexists(start_key(running), "1"))
    due_ms: dict[str, float] = {}
    if side == "durable":
        records = {job_id: store.get(job_id) or {} for job_id in countdown}
        due_ms = {job_id: float(fields["next_attempt_at"]) for job_id, fields in
                  records.items() if fields.get("state") == "retrying"}  # fmt: skip
        return started, due_ms
    for job_id in countdown:
        first = bench.client.hget(start_key(job_id), "1")
        if first is not None:
            text = first.decode() if isinstance(first, bytes) else first
            due_ms[job_id] = float(text.split("|")[0]) + delay * 1000
    return started, due_ms


def recovery(bench: Bench, retries: int, cap: float, lease: float, delay: float) -> Section:
    sweep = 1.0
    bar = lease + sweep + 1.0
    settings = {"DURABLE_LEASE_SECONDS": f"{lease:g}", "DURABLE_SWEEP_SECONDS": f"{sweep:g}",
                "BENCH_RECOVERY_DELAY": f"{delay:g}"}  # fmt: skip
    section = Section(
        "6. Recovery after SIGKILL of a whole worker", load_before=load(),
        settings=f"Worker A (prefork, 2) runs a long job and holds {retries} countdown "
        f"retries ({delay:g} s delay); worker B is up and consuming the queue; A's whole process "
        f"group is SIGKILLed. Recovery = the attempt's start on B minus the kill (the running "
        f"job) or minus its due time if later (the retries). durable-retry: "
        f"DURABLE_LEASE_SECONDS={lease:g}, DURABLE_SWEEP_SECONDS={sweep:g}, an interruption "
        f"retries at once. Plain Celery: visibility_timeout 3600 s (the default); waited at "
        f"most {cap:g} s.",
    )  # fmt: skip
    # durable-retry is waited for as long as it takes (bounded); plain Celery up to the cap.
    ours, _, held = _recover(bench, "durable", retries, lease + delay + 60, settings, delay)
    plain, _, plain_held = _recover(
        bench, "plain", retries, cap, {"BENCH_RECOVERY_DELAY": f"{delay:g}"}, delay
    )
    capped = f"> {cap:g} s (visibility_timeout 3600 s)"
    worst_ours = max(ours[1:]) if len(ours) > 1 else float("nan")
    worst_plain = max(plain[1:]) if len(plain) > 1 else float("nan")
    section.rows += [
        Row("6", "running job: kill -> runs on B", ours[0], plain[0], unit="s",
            bar=f"<= lease + sweep + 1 s = {bar:g} s", rule=f"<={bar}",
            note=capped if plain[0] == float("inf") else ""),
        Row("6", "countdown retries: due -> run on B (worst)", worst_ours, worst_plain,
            unit="s", bar=f"<= {bar:g} s", rule=f"<={bar}",
            note=capped if worst_plain == float("inf") else ""),
    ]  # fmt: skip
    for row in section.rows:
        if row.plain == float("inf"):
            row.plain = None
    section.details += [
        f"- durable-retry: at the kill A held {held}; delays "
        + ", ".join(f"{d:.2f} s" for d in ours),
        f"- plain Celery: at the kill A held {plain_held}; delays "
        + ", ".join("never" if d == float("inf") else f"{d:.2f} s" for d in plain)
        + f" (within {cap:g} s).",
    ]
    section.load_after = load()
    return section
