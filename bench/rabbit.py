"""Scenario 10: recovery after SIGKILL with RabbitMQ as the broker, both sides.

The anchor for scenario 6: on RabbitMQ, plain Celery gets a dead worker's unacked
messages back at once (the broker requeues them when the connection drops), and
Celery 5.5+ can keep countdowns in the broker (native delayed delivery, with
quorum queues behind a topic exchange). Both queue setups are measured:

- ``classic``: Celery's defaults (a classic queue, a direct exchange): a countdown
  message is delivered at once and waits unacked in the worker until its ETA;
  at the kill it is requeued with the rest.
- ``quorum``: ``task_default_queue_type='quorum'``, a topic exchange and
  ``broker_native_delayed_delivery_queue_type='quorum'``: a countdown of 1 s or
  more waits in the ``celery_delayed_*`` queues; no worker holds it.

The job state (durable-retry's records, the bench's start times) stays on the
bench's own Redis. Each run uses a queue (and exchange) of its own, deleted after.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from datetime import datetime, timezone

from celery import Celery
from kombu import Connection

from bench.brokers import (
    DELAY_LEVELS,
    RABBITMQ_URL,
    delay_queue,
    queue_settings,
    rabbitmq_unavailable,
)
from bench.harness import Bench, load, median
from bench.plain_jobs import PLAIN_CONFIG
from bench.records import due_key, start_key
from bench.report import Row, Section
from bench.timing import where_jobs_are
from workers.core.store import Store


def _ready(connection: Connection, queue: str) -> int | None:
    """Messages ready in ``queue`` (not those a consumer holds); None if it does not exist."""
    channel = connection.channel()
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except connection.channel_errors:
        return None
    finally:
        with contextlib.suppress(Exception):
            channel.close()


def _in_delay_queues(connection: Connection) -> int:
    return sum(_ready(connection, delay_queue(level)) or 0 for level in range(DELAY_LEVELS))


def _delay_queues_exist(connection: Connection) -> bool:
    return _ready(connection, delay_queue(0)) is not None


def _delete(connection: Connection, kind: str, name: str) -> None:
    """Delete a queue or an exchange on a channel of its own (an error closes it)."""
    channel = connection.channel()
    try:
        with contextlib.suppress(*connection.channel_errors):
            if kind == "queue":
                channel.queue_delete(name)
            else:
                channel.exchange_delete(name)
    finally:
        with contextlib.suppress(Exception):
            channel.close()


def _delete_delay_queues(connection: Connection, wait: float) -> int:
    """Remove the native-delayed-delivery queues and exchanges this scenario declared,
    once empty (waited for up to ``wait`` s: another user of the broker may have
    started using them meanwhile). Returns the messages left (0: all removed)."""
    deadline = time.monotonic() + wait
    while (left := _in_delay_queues(connection)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        return left
    for level in range(DELAY_LEVELS):
        _delete(connection, "queue", delay_queue(level))
    for level in range(DELAY_LEVELS):
        _delete(connection, "exchange", delay_queue(level))
    _delete(connection, "exchange", "celery_delayed_delivery")
    return 0


def _client(queue: str, queue_type: str) -> Celery:
    client = Celery("bench_rabbit_client", broker=RABBITMQ_URL)
    client.conf.update(PLAIN_CONFIG)
    client.conf.update(queue_settings(queue, queue_type))
    return client


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _starts(bench: Bench, job_id: str) -> list[tuple[float, str]]:
    """(Redis ms, hostname) of every start the job's bodies recorded (one per attempt
    number: plain Celery's redelivered first attempt overwrites attempt 1)."""
    found = []
    for value in bench.client.hgetall(start_key(job_id)).values():
        at, host = _text(value).split("|", 1)
        found.append((float(at), host))
    return found


def _recover(bench: Bench, side: str, queue_type: str, retries: int, delay: float,
             cap: float, settings: dict[str, str]) -> tuple[list[float], str]:  # fmt: skip
    """Worker A holds a running job and ``retries`` countdown retries; B is consuming
    the queue too; A's process group is SIGKILLed. Returns each job's seconds from
    the kill (the running job, first) or from its due time if later (the retries)
    until its body started on B (inf: not within ``cap``), and what was where at
    the kill."""
    bench.flush()
    queue = f"bench_rabbit_{uuid.uuid4().hex[:12]}"
    idle = f"{queue}_idle"
    env = {"BENCH_BROKER_URL": RABBITMQ_URL, "BENCH_QUEUE": queue,
           "BENCH_QUEUE_TYPE": queue_type, "BENCH_RECOVERY_DELAY": f"{delay:g}"}  # fmt: skip
    if side == "durable":
        env["DURABLE_BROKER_URL"] = RABBITMQ_URL
    env.update(settings)
    client = _client(queue, queue_type)
    connection = Connection(RABBITMQ_URL, connect_timeout=5)
    a = b = None
    try:
        a = bench.worker(side, name="a", settings=env, queues=queue)
        b = bench.worker(side, name="b", settings=env, queues=idle)
        name = f"{'bench.jobs' if side == 'durable' else 'bench.plain_jobs'}.recovering"
        with client.producer_or_acquire() as producer:
            ids = [client.send_task(name, args=args, producer=producer).id
                   for args in [(60.0,)] + [(0.0,)] * retries]  # fmt: skip
        running, *countdown = ids
        store = Store(bench.client)
        deadline = time.monotonic() + 60
        settled = 0
        while settled < 3:  # three checks in a row, 0.1 s apart: nothing in flight
            started, due_ms = where_jobs_are(bench, store, side, running, countdown, delay)
            quiet = _ready(connection, queue) == 0
            settled = settled + 1 if started and len(due_ms) == retries and quiet else 0
            if time.monotonic() > deadline:
                raise TimeoutError(f"{side}/{queue_type}: worker A did not take the jobs:\n"
                                   f"{a.log_text()[-2000:]}")  # fmt: skip
            time.sleep(0.1)
        in_broker = _in_delay_queues(connection)
        host = f"{b.name}@{socket.gethostname()}"
        replies = client.control.add_consumer(queue, destination=[host], reply=True, timeout=5)
        if not replies:
            raise RuntimeError(f"worker {host} did not answer add_consumer")
        killed_ms = bench.now_ms()  # the SIGKILL itself (kill() then waits for the reaping)
        a.kill()
        on_b: dict[str, float] = {}
        end = time.monotonic() + cap
        for job_id in ids:
            while True:
                starts = _starts(bench, job_id)
                elsewhere = [(at, h) for at, h in starts if not h.startswith((a.name, b.name))]
                if elsewhere:
                    raise RuntimeError(f"{side}: job {job_id} ran on {elsewhere}")
                mine = [at for at, h in starts if h.startswith(b.name)]
                if mine:
                    on_b[job_id] = min(mine)
                    break
                if time.monotonic() > end:
                    on_b[job_id] = float("inf")
                    break
                time.sleep(0.02)
        time.sleep(0.2)  # the plain retries record their ETA just after their start
        for job_id in countdown:
            eta = bench.client.get(due_key(job_id))  # plain Celery: the retry's own ETA
            if eta is not None:
                due_ms[job_id] = float(eta)
        delays = [(on_b[job_id] - max(killed_ms, due_ms.get(job_id, killed_ms))) / 1000
                  for job_id in ids]  # fmt: skip
        where = (
            f"{retries} countdown retries due {min(due_ms.values()) - killed_ms:.0f}-"
            f"{max(due_ms.values()) - killed_ms:.0f} ms after the kill, {in_broker} of "
            f"them in the broker's delay queues and {retries - in_broker} held unacked by A"
        )
        if side == "durable":
            stats = store.stats()
            where += (f"; sweeper: recoveries:lease {stats.get('recoveries:lease', 0)}, "
                      f"recoveries:due {stats.get('recoveries:due', 0)}")  # fmt: skip
        return delays, where
    finally:
        for worker in (a, b):
            if worker is not None:
                worker.kill()
        for name in (queue, idle):
            _delete(connection, "queue", name)
            _delete(connection, "exchange", name)
        connection.release()
        client.close()


def _fmt(delays: list[float]) -> str:
    return ", ".join("never" if d == float("inf") else f"{d:.2f} s" for d in delays)


def _explanation(lease: float, sweep: float) -> list[str]:
    """Why the running job's figures differ, and what a user can tune (written with the
    figures, so every run of the bench keeps it next to them)."""
    return [
        "",
        "Why durable-retry is slower for the running job, and what to tune:",
        "",
        "- Plain Celery runs the body again as soon as RabbitMQ notices the closed "
        "connection: the broker requeues the unacked message (acks_late) and B starts it. "
        "The broker cannot tell a dead worker from one whose connection dropped while the "
        "body still runs (a network partition, a broker restart, a missed heartbeat): "
        "then plain Celery runs the body twice, both at once.",
        "- durable-retry's B gets the same redelivered message just as fast, but `claim` "
        "finds the attempt still `running` under A's lease and drops the copy (fencing, "
        "invariant 1). The lease is what stops a body running twice: only a lease that "
        "ran out shows A is no longer running the body. A's lease keeper renews it every "
        "third of DURABLE_LEASE_SECONDS, so it runs out between 2/3 of a lease and a "
        "lease after the kill; the next sweeper pass (every DURABLE_SWEEP_SECONDS) takes "
        "it over and records the `interruption` into the due set, and the pass after "
        "publishes it (in a pass, due retries are published before expired leases are "
        "taken over: workers/core/sweeper.py `run_once`). Recovery is therefore 2/3 "
        "lease to lease + 2 sweeps, plus the interruption's delay in the policy (0 s "
        f"here): {lease * 2 / 3:.1f}-{lease + 2 * sweep:g} s with this run's "
        f"DURABLE_LEASE_SECONDS={lease:g}, DURABLE_SWEEP_SECONDS={sweep:g}. In this "
        "bench A dies about half a second after the claim, before its first renewal, "
        "so the figure sits near the top of that range.",
        "- To tune: DURABLE_LEASE_SECONDS (default 30 s) sets most of the gap. A shorter "
        "lease costs renewals more often (one script call per worker process every "
        "lease/3, for all its running attempts at once) and leaves less slack for a "
        "worker that cannot reach Redis: one that misses its renewals for a whole lease "
        "loses the attempt to a sweeper (its own late `succeed`/`fail` then change "
        "nothing, and the body may run twice). DURABLE_SWEEP_SECONDS (default 1 s) adds "
        "up to two intervals; the policy's `events: interruption: backoff` adds its delay.",
        "- Countdown retries are not slower on RabbitMQ, on either side: with classic "
        "queues the dead worker's ETA messages come back at once and B runs them at their "
        "due time; with quorum queues they wait in the broker and no worker holds them. "
        "durable-retry's B claims them at due, so no sweeper copy is made "
        "(`recoveries:due` 1 per run above is the interrupted job's next attempt). On "
        "Redis (scenario 6) a dead worker's countdown messages come back only after the "
        "visibility timeout, and the sweeper's republish is the recovery.",
    ]


def recovery_rabbitmq(bench: Bench, retries: int, lease: float, delay: float, runs: int = 1,
                      queue_types: tuple[str, ...] = ("classic", "quorum")) -> Section:  # fmt: skip
    sweep = 1.0
    bar = lease + sweep + 1.0
    section = Section(
        "10. Recovery after SIGKILL with RabbitMQ as the broker", load_before=load(),
        settings=f"Scenario 6 with the broker on the machine's RabbitMQ "
        f"({RABBITMQ_URL.split('@')[-1]}; job state still on the bench's Redis): worker A "
        f"(prefork, 2) runs a long job and "
        f"holds {retries} countdown retries ({delay:g} s delay), worker B is consuming the "
        f"same queue (a queue of its own per run), A's whole process group is SIGKILLed. "
        f"Recovery = the body's start on B minus the SIGKILL (the running job) or minus its "
        f"due time if later (the retries); medians of {runs} run(s) per side and setup, "
        f"A/B alternating. Plain Celery: acks_late, reject_on_worker_lost "
        f"(bench/plain_jobs.py), `self.retry(countdown={delay:g})`. durable-retry: "
        f"DURABLE_LEASE_SECONDS={lease:g}, DURABLE_SWEEP_SECONDS={sweep:g}, an interruption "
        f"retries at once. Queue setups: classic = Celery's defaults (direct exchange; a "
        f"countdown message waits unacked in the worker); quorum = "
        f"task_default_queue_type='quorum', a topic exchange, "
        f"broker_native_delayed_delivery_queue_type='quorum' (Celery's native delayed "
        f"delivery: countdowns wait in the broker).",
    )  # fmt: skip
    reason = rabbitmq_unavailable()
    if reason is not None:
        section.details.append(f"- skipped: {reason}.")
        section.load_after = load()
        return section
    durable_settings = {"DURABLE_LEASE_SECONDS": f"{lease:g}",
                        "DURABLE_SWEEP_SECONDS": f"{sweep:g}"}  # fmt: skip
    cap = lease + delay + 60
    measured: dict[tuple[str, str], list[tuple[list[float], str]]] = {}
    with Connection(RABBITMQ_URL, connect_timeout=5) as connection:
        had_delay_queues = _delay_queues_exist(connection)
        server = connection.connection.server_properties  # the AMQP handshake's
    section.details.append(
        f"- broker: {_text(server.get('product', 'RabbitMQ'))} "
        f"{_text(server.get('version', '(version unknown)'))} on "
        f"{RABBITMQ_URL.split('@')[-1]}; the job state on the bench's Redis."
    )
    try:
        for queue_type in queue_types:
            for _ in range(runs):
                for side in ("durable", "plain"):
                    extra = durable_settings if side == "durable" else {}
                    measured.setdefault((side, queue_type), []).append(
                        _recover(bench, side, queue_type, retries, delay, cap, extra)
                    )
    finally:
        if not had_delay_queues:
            with Connection(RABBITMQ_URL, connect_timeout=5) as connection:
                left = _delete_delay_queues(connection, wait=delay + 5)
            if left:
                section.details.append(f"- {left} messages were still in Celery's delay "
                                       "queues at the end; they were left in place.")  # fmt: skip
    for queue_type in queue_types:
        figures = {}
        for side in ("durable", "plain"):
            results = measured[side, queue_type]
            running = median([delays[0] for delays, _ in results])
            worst = median([max(delays[1:]) for delays, _ in results if len(delays) > 1])
            figures[side] = (running, worst)
            name = "durable-retry" if side == "durable" else "plain Celery"
            for i, (delays, where) in enumerate(results, 1):
                section.details.append(
                    f"- {queue_type}, {name}, run {i}: at the kill {where}; delays {_fmt(delays)}."
                )
        section.rows += [
            Row("10", f"RabbitMQ {queue_type} queue: running job, kill -> body starts on B",
                figures["durable"][0], figures["plain"][0], unit="s",
                bar=f"<= lease + sweep + 1 s = {bar:g} s", rule=f"<={bar}"),
            Row("10", f"RabbitMQ {queue_type} queue: countdown retries, due -> run on B "
                "(worst)", figures["durable"][1], figures["plain"][1], unit="s",
                bar=f"<= {bar:g} s", rule=f"<={bar}"),
        ]  # fmt: skip
    for row in section.rows:
        if row.plain == float("inf"):
            row.plain = None
            row.note = f"never (within {cap:g} s)"
    section.details += [
        f"- measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; delays in the order "
        "running job, then the retries.",
        *_explanation(lease, sweep),
    ]
    section.load_after = load()
    return section
