"""A Redis that answers but refuses writes loses nothing (issue 18).

Each test puts a real Redis, the job state's own (in the test's tmp dir; the
broker stays on the session's Redis), into one condition operators meet:
out of memory (maxmemory under noeviction, filler keys), read-only (it became a
replica), MISCONF (an RDB save failed, stop-writes-on-bgsave-error yes),
NOREPLICAS (min-replicas-to-write 1, no replica). Attempts run into it at both
ends: bodies that were running when it started end during it (their
``succeed``/``fail`` is refused), and jobs enqueued during it find their
``claim`` refused. Once it clears every job finishes: 0 lost, 0 duplicate
bodies, no attempt counted for the refusal, one line per worker per streak.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from tests import jobs
from tests.conftest import TEST_SETTINGS, wait_for
from tests.integration.test_alerts import Webhook
from tests.support.invariants import InvariantChecker, Sampler
from tests.support.ops import control_of
from tests.support.worker_process import WorkerProcess
from workers import JobState
from workers.core.refusals import refusal_reason
from workers.core.store import Store
from workers.ops.embedded_redis import RedisServer, find_redis_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LEASE = float(TEST_SETTINGS["DURABLE_LEASE_SECONDS"])
# Longer than a lease, so every running attempt's lease runs out during the
# refusal (renewals are refused too), and shorter than DURABLE_REDIS_WAIT_SECONDS.
HOLD_SECONDS = LEASE + 3
STREAK_LINE = "refuses writes:"


def _redis_major() -> int:
    out = subprocess.run([find_redis_server(), "--version"], capture_output=True, text=True)
    version = out.stdout.split("v=", 1)[1].split()[0] if "v=" in out.stdout else "6"
    return int(version.split(".")[0])


class StateRedis:
    """The job state's Redis, of one test; the broker is the session's Redis."""

    def __init__(self, data_dir: Path, broker_url: str, extra_args: tuple[str, ...] = (),
                 appendonly: bool = True) -> None:  # fmt: skip
        self.server = RedisServer(data_dir, appendonly=appendonly, extra_args=extra_args)
        self.server.start()
        self.client: redis.Redis = self.server.client()
        self.store = Store.from_url(self.server.url)
        self.broker_url = broker_url
        self.sender = Celery("refusal-client", broker=broker_url)
        self.sender.conf.task_serializer = "json"

    @property
    def env(self) -> dict[str, str]:
        return {"DURABLE_REDIS_URL": self.server.url, "DURABLE_BROKER_URL": self.broker_url}

    def send(self, task: str, *args: Any) -> str:
        job_id = str(uuid.uuid4())
        self.sender.send_task(f"tests.jobs.{task}", args=list(args), task_id=job_id)
        return job_id

    def record(self, job_id: str) -> Any:
        return control_of(self.store).status(job_id)

    def all_succeeded(self, ids: list[str]) -> Callable[[], bool]:
        def done() -> bool:
            return all((r := self.record(i)) is not None and r.state is JobState.SUCCEEDED
                       for i in ids)  # fmt: skip
        return done

    def refuses(self) -> str | None:
        """The refusal a plain write meets now, or None if Redis takes it."""
        try:
            self.client.set("refusal-probe", "1")
        except redis.RedisError as exc:
            reason = refusal_reason(exc)
            assert reason is not None, f"not a refusal: {exc!r}"
            return reason
        self.client.delete("refusal-probe")
        return None

    def close(self) -> None:
        self.server.kill()


# -- the conditions, as an operator meets them ----------------------------------------


@dataclass
class Condition:
    reason: str
    start: Callable[[StateRedis], None]
    clear: Callable[[StateRedis], None]
    redis_options: dict[str, Any] = field(default_factory=dict)
    prepare: Callable[[StateRedis], None] = lambda state: None  # before any job runs


def _fill_memory(state: StateRedis) -> None:
    """maxmemory under noeviction (the compose file's policy), reached by filler keys."""
    client = state.client
    client.config_set("maxmemory-policy", "noeviction")
    value = "x" * 10_000
    for i in range(300):  # about 3 MB of filler
        client.set(f"filler:{i}", value)
    used = int(client.info("memory")["used_memory"])
    # A limit 1 MB under what is used: the fillers are what does not fit, and
    # the margin keeps a freed client buffer from letting a write through.
    client.config_set("maxmemory", used - 1_000_000)


def _free_memory(state: StateRedis) -> None:
    # What `retryctl purge` does for ended records: delete keys (DEL is allowed when full).
    state.client.delete(*[f"filler:{i}" for i in range(300)])


def _start_copy(state: StateRedis, tmp_path: Path) -> None:
    """A second Redis, replica of the state Redis, synced: the master-to-be."""
    copy = RedisServer(tmp_path / "copy-redis", extra_args=("--replicaof", "127.0.0.1",
                                                            str(state.server.port)))  # fmt: skip
    copy.start()
    state.copy = copy  # type: ignore[attr-defined]
    wait_for(lambda: copy.client().info("replication").get("master_link_status") == "up", 30,
             "the copy to sync")  # fmt: skip


def _become_replica(state: StateRedis) -> None:
    """Make the state Redis a read-only replica, keeping its data (a failover's shape).

    A Redis that becomes a replica takes its master's data set, so the master
    must first be a copy: the second Redis (:func:`_start_copy`) is its synced
    replica; the state Redis pauses writes until the copy has every one, the
    copy is promoted, and the state Redis becomes the copy's replica. Nothing
    written is lost, and the state Redis answers READONLY to every write.
    """
    a = state.client
    copy: RedisServer = state.copy  # type: ignore[attr-defined]
    b = copy.client()
    a.client_pause(10_000, all=False)  # WRITE: reads go on, writes wait
    try:
        wait_for(lambda: b.info("replication")["master_repl_offset"]
                 >= a.info("replication")["master_repl_offset"], 10,
                 "the copy to catch up")  # fmt: skip
        b.replicaof("NO", "ONE")
        a.replicaof("127.0.0.1", copy.port)
        wait_for(lambda: a.info("replication").get("master_link_status") == "up", 30,
                 "the state Redis to replicate the copy")  # fmt: skip
    finally:
        a.client_unpause()


def _become_master(state: StateRedis) -> None:
    state.client.replicaof("NO", "ONE")


def _break_disk(state: StateRedis, rdb_dir: Path) -> None:
    """An RDB save that fails: the Redis' working dir is removed (root ignores file
    modes, but no one can create a file in a directory that no longer exists)."""
    # Redis stops writes on a failed save only when it is configured to save.
    state.client.config_set("save", "3600 1")
    state.client.config_set("stop-writes-on-bgsave-error", "yes")
    subprocess.run(["rm", "-rf", str(rdb_dir)], check=True)
    state.client.bgsave()
    wait_for(lambda: state.client.info("persistence")["rdb_last_bgsave_status"] == "err", 15,
             "the RDB save to fail")  # fmt: skip


def _fix_disk(state: StateRedis, rdb_dir: Path) -> None:
    fixed = rdb_dir.with_name("rdb-fixed")
    fixed.mkdir()
    state.client.config_set("dir", str(fixed))
    wait_for(lambda: _bgsave_ok(state), 15, "an RDB save to succeed")


def _bgsave_ok(state: StateRedis) -> bool:
    persistence = state.client.info("persistence")
    if persistence["rdb_bgsave_in_progress"]:
        return False
    if persistence["rdb_last_bgsave_status"] == "ok":
        return True
    with contextlib.suppress(redis.ResponseError):  # one is already running
        state.client.bgsave()
    return False


def _condition(name: str, tmp_path: Path) -> Condition:
    rdb_dir = tmp_path / "rdb"
    if name == "out-of-memory":
        return Condition(name, _fill_memory, _free_memory)
    if name == "read-only":
        return Condition(name, _become_replica, _become_master,
                         prepare=lambda s: _start_copy(s, tmp_path))  # fmt: skip
    if name == "misconf":
        rdb_dir.mkdir()
        protected = ("--enable-protected-configs", "local") if _redis_major() >= 7 else ()
        return Condition(
            name, lambda s: _break_disk(s, rdb_dir), lambda s: _fix_disk(s, rdb_dir),
            redis_options={"appendonly": False,
                           "extra_args": ("--dir", str(rdb_dir), *protected)},
        )  # fmt: skip
    if name == "no-replicas":
        return Condition(
            name, lambda s: s.client.config_set("min-replicas-to-write", 1),
            lambda s: s.client.config_set("min-replicas-to-write", 0),
        )  # fmt: skip
    raise LookupError(name)


CONDITIONS = ("out-of-memory", "read-only", "misconf", "no-replicas")


# -- the tests --------------------------------------------------------------------------


@pytest.mark.parametrize("name", CONDITIONS)
def test_a_refusing_redis_loses_no_job_and_counts_no_attempt(
    name: str, tmp_path: Path, redis_client: redis.Redis, redis_server: RedisServer,
    start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    condition = _condition(name, tmp_path)
    state = StateRedis(tmp_path / "state-redis", redis_server.url, **condition.redis_options)
    hook = Webhook()
    try:
        _run_through(condition, state, start_worker, hook, tmp_path / "release-bodies")
    finally:
        hook.close()
        copy = getattr(state, "copy", None)
        if copy is not None:
            copy.kill()
        state.close()


def _run_through(condition: Condition, state: StateRedis,
                 start_worker: Callable[..., WorkerProcess], hook: Webhook,
                 release: Path) -> None:  # fmt: skip
    condition.prepare(state)
    env = {**state.env, "DURABLE_ALERT_WEBHOOK": hook.url}
    # Four pool processes each: the four held bodies run wherever their messages went.
    workers = [start_worker(n, env=env, concurrency=4) for n in ("r1", "r2")]
    # Running when the refusal starts; they end during it (released by a file once
    # it has started, whatever the machine's speed): two succeed, two fail once.
    ending = [state.send("holds_until", str(release)) for _ in range(2)]
    failing = [state.send("holds_until", str(release), 1) for _ in range(2)]
    running = ending + failing
    checker = InvariantChecker(state.client, running)
    wait_for(lambda: all(jobs.body_runs(state.client, i).get(1) for i in running), 30,
             "every first attempt to start")  # fmt: skip

    condition.start(state)
    assert state.refuses() == condition.reason
    release.touch()
    with Sampler(checker):
        # Enqueued during the refusal: their claims are refused, their bodies wait.
        arriving = [state.send("add", n, n) for n in range(4)] + [state.send("flaky", 1)]
        checker.add(arriving)
        wait_for(lambda: all(STREAK_LINE in w.log_text() for w in workers), 30,
                 "each worker to say Redis refuses writes")  # fmt: skip
        time.sleep(HOLD_SECONDS)  # how long the condition lasts: past every lease
        for job_id in running + arriving:
            # No claim is taken during the refusal, so no further body has run.
            assert jobs.body_runs(state.client, job_id) == ({1: 1} if job_id in running else {})
        condition.clear(state)
        assert state.refuses() is None
        ids = running + arriving
        wait_for(state.all_succeeded(ids), 60, "every job to succeed once Redis takes writes")
    checker.sample()
    checker.check_bodies()
    checker.assert_held()

    expected = {**{i: 1 for i in ending + arriving}, **{i: 2 for i in failing}}
    expected.update({arriving[-1]: 2})  # flaky(1): its own failure, then success
    for job_id, attempts in expected.items():
        record = state.record(job_id)
        assert record.attempts == attempts, (job_id, record.attempts, "an attempt was counted")
        assert jobs.body_runs(state.client, job_id) == {n: 1 for n in range(1, attempts + 1)}
    stats = state.store.stats()
    assert stats.get("failures:interruption", 0) == 0, stats
    assert stats.get("failures:error", 0) == len(failing) + 1, stats  # the jobs' own errors
    wait_for(lambda: state.store.stats().get(f"refusals:{condition.reason}", 0) > 0, 15,
             "the refusals to be counted in Redis once the streak ended")  # fmt: skip

    for worker in workers:
        # Each worker's main process ends its streak at its own next sweep (a pass
        # every 0.5 s here): one worker's stored counts say nothing of the other's.
        wait_for(lambda w=worker: "accepts writes again" in w.log_text(), 15,
                 f"{worker.name} to say Redis accepts writes again")  # fmt: skip
        text = worker.log_text()
        streak_lines = [line for line in text.splitlines() if STREAK_LINE in line]
        assert len(streak_lines) == 1, streak_lines  # one per worker, not one per job
        assert "jobs are held, none is lost" in streak_lines[0]
        assert "Traceback" not in text, text[-4000:]
        assert worker.process is not None and worker.process.poll() is None, worker.name
    assert len(hook.bodies) == len(workers), hook.bodies  # one alert per worker per streak
    assert {b["event"] for b in hook.bodies} == {"redis_refuses_writes"}
    assert {b["reason"] for b in hook.bodies} == {condition.reason}
    print(f"REFUSAL {condition.reason}: jobs={len(expected)} lost=0 duplicates=0 "
          f"interruptions=0 streak_lines={len(workers)} (1 per worker) "
          f"refused_calls={state.store.stats().get(f'refusals:{condition.reason}')}: "
          f"{streak_lines[0].split('durable-retry: ', 1)[-1]}")  # fmt: skip


def test_a_refusal_longer_than_the_wait_hands_messages_back_and_loses_none(
    tmp_path: Path, redis_client: redis.Redis, redis_server: RedisServer,
    start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    """Claims that wait longer than DURABLE_REDIS_WAIT_SECONDS give the message back
    to the broker (Reject requeue), one short line each, no traceback; no body runs."""
    state = StateRedis(tmp_path / "state-redis", redis_server.url)
    try:
        env = {**state.env, "DURABLE_REDIS_WAIT_SECONDS": "1"}
        worker = start_worker("h1", env=env)
        state.client.config_set("min-replicas-to-write", 1)
        ids = [state.send("add", n, 1) for n in range(4)]
        wait_for(lambda: worker.log_text().count("handing the message back") >= 4, 60,
                 "the claims to give up waiting and hand their messages back")  # fmt: skip
        assert all(not jobs.body_runs(state.client, i) for i in ids)
        assert all(state.record(i) is None for i in ids)  # nothing claimed, nothing stored
        state.client.config_set("min-replicas-to-write", 0)
        wait_for(state.all_succeeded(ids), 60, "every job to succeed once Redis takes writes")
        for job_id in ids:
            assert state.record(job_id).attempts == 1
            assert jobs.body_runs(state.client, job_id) == {1: 1}
        text = worker.log_text()
        assert "reject requeue=True" in text  # Celery's own line for each handed-back message
        assert "Traceback" not in text, text[-4000:]
        assert sum(STREAK_LINE in line for line in text.splitlines()) == 1
    finally:
        state.close()


def test_metrics_count_refusals_during_the_streak_and_show_memory_against_maxmemory(
    tmp_path: Path, redis_client: redis.Redis, redis_server: RedisServer,
) -> None:  # fmt: skip
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from workers.core.refusals import Refusals
    from workers.ops.metrics import JobsCollector

    state = StateRedis(tmp_path / "state-redis", redis_server.url)
    try:
        store = state.store
        refusals = Refusals(state.server.url, client=lambda: store.redis,
                            store_counts=store.add_stats)  # fmt: skip
        registry = CollectorRegistry(auto_describe=False)
        registry.register(JobsCollector(store, refusals=refusals))

        def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            text = generate_latest(registry).decode()
            return {(s.name, tuple(sorted(s.labels.items()))): s.value
                    for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip

        state.client.config_set("maxmemory", 512 * 1024 * 1024)
        state.client.config_set("min-replicas-to-write", 1)
        for _ in range(3):
            try:
                store.heartbeat("metrics-test", 1000)
            except redis.RedisError as exc:
                refusals.note(exc, refusal_reason(exc) or "?")
        during = scrape()  # Redis refuses writes, but reads (the scrape) work
        assert during[("durable_redis_refusals_total", (("reason", "no-replicas"),))] == 3
        assert during[("durable_redis_maxmemory_bytes", ())] == 512 * 1024 * 1024
        assert 0 < during[("durable_redis_used_memory_bytes", ())] < 512 * 1024 * 1024
        state.client.config_set("min-replicas-to-write", 0)
        store.heartbeat("metrics-test", 1000)
        refusals.accepted()  # the streak ends: its counts move into durable:stats
        assert store.stats()["refusals:no-replicas"] == 3
        assert scrape()[("durable_redis_refusals_total", (("reason", "no-replicas"),))] == 3
    finally:
        state.close()
