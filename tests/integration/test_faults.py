"""Faults production brings: Redis restarts and outages, operators at the worst
moment, many sweepers on one Redis, a worker whose clock is off.

Redis faults use a Redis server of their own (in the test's tmp dir), so the
session's server is never the one that goes away. Worker crashes, warm
shutdown and the two-worker duplicate hunt are in test_crashes.py and
test_enqueue.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from policies import Retry
from tests import jobs
from tests.conftest import TEST_SETTINGS, wait_for
from tests.support.invariants import InvariantChecker, Sampler
from tests.support.ops import control, control_of, runtime
from tests.support.sender import Sender
from tests.support.worker_process import ROOT, WorkerProcess
from workers import JobState, app, durable_of
from workers.core.attempt import Attempt
from workers.core.clock import RedisClock
from workers.core.failures import failure_from_exception
from workers.core.outcomes import Payload
from workers.core.publisher import NextAttempt, Publisher
from workers.core.recorder import record_failure
from workers.core.store import Claimed, Store
from workers.core.sweeper import Sweeper
from workers.ops.embedded_redis import RedisServer

pytestmark = pytest.mark.integration

LEASE = float(TEST_SETTINGS["DURABLE_LEASE_SECONDS"])
SWEEP = float(TEST_SETTINGS["DURABLE_SWEEP_SECONDS"])


# -- a Redis of the test's own ------------------------------------------------------


class OwnRedis:
    """A Redis server (AOF, fsync always) for one test, with a client app and a store."""

    def __init__(self, data_dir: Path) -> None:
        self.server = RedisServer(data_dir)
        self.server.start()
        self.client: redis.Redis = self.server.client()
        self.jobs = Sender(self.server.url, Store.from_url(self.server.url), name="fault-client")
        self.store = self.jobs.store

    @property
    def env(self) -> dict[str, str]:
        return {"DURABLE_REDIS_URL": self.server.url}

    def send(self, task: str, *args: Any) -> str:
        return self.jobs.send(task, *args)

    def state(self, job_id: str) -> JobState | None:
        return self.jobs.state(job_id)

    def all_succeeded(self, ids: list[str]) -> Callable[[], bool]:
        return lambda: self.jobs.all_succeeded(ids)

    def close(self) -> None:
        self.server.kill()


@pytest.fixture
def own_redis(tmp_path: Path, redis_client: redis.Redis) -> Iterator[OwnRedis]:
    own = OwnRedis(tmp_path / "own-redis")
    yield own
    own.close()


def test_redis_restart_with_aof_keeps_state_and_schedule(own_redis, start_worker):
    workers = [start_worker(name, env=own_redis.env) for name in ("r1", "r2")]
    ids = [own_redis.send("flaky", 4) for _ in range(12)]
    waiting_long = [own_redis.send("fail_once_long") for _ in range(4)]  # due set only
    countdowns = [own_redis.send("fail_once_slowly") for _ in range(4)]  # broker countdown
    ids += waiting_long + countdowns
    checker = InvariantChecker(own_redis.client, ids)
    wait_for(
        lambda: all(own_redis.state(i) is JobState.RETRYING for i in waiting_long + countdowns),
        30, "the long and countdown retries to be scheduled",
    )  # fmt: skip
    before = {i: control_of(own_redis.store).status(i) for i in waiting_long + countdowns}

    with Sampler(checker):
        own_redis.server.kill()  # SIGKILL: appendfsync always keeps every acknowledged write
        time.sleep(2)
        own_redis.server.start()
        for job_id, record in before.items():
            after = control_of(own_redis.store).status(job_id)
            assert after is not None and record is not None
            assert after.attempts >= record.attempts
            assert after.first_failure_at == record.first_failure_at
        wait_for(own_redis.all_succeeded(ids), 90, "every job to succeed after the restart")
    checker.sample()
    attempts = checker.check_bodies()
    checker.assert_held()
    # A body's own write to Redis may fail while it is down: that attempt fails
    # (and is retried) without a count, so only a floor is certain.
    assert attempts >= len(ids) * 2
    _assert_survived(workers)


def test_countdown_retry_held_across_a_redis_restart_runs_when_due(own_redis, start_worker):
    """Celery drops the countdown messages a worker held when its broker connection
    is lost (they come back after the visibility timeout): the reconnect counts as
    a death, so the retry is published when due, not at the safety time (10 leases)."""
    worker = start_worker("r1", env=own_redis.env)
    job_id = own_redis.send("fail_once_slowly")  # its retry rides a 3 s broker countdown
    wait_for(lambda: own_redis.state(job_id) is JobState.RETRYING, 30, "attempt 1 to fail")
    waiting = control_of(own_redis.store).status(job_id)
    assert waiting is not None and waiting.next_attempt_at is not None

    own_redis.server.kill()  # the worker holds the countdown message, then loses it
    time.sleep(1)
    own_redis.server.start()

    wait_for(own_redis.all_succeeded([job_id]), 60, "attempt 2 after the restart")
    started_ms = jobs.body_started_ms(own_redis.client, job_id, 2)
    assert started_ms is not None
    late_by = started_ms / 1000 - waiting.next_attempt_at.timestamp()
    # At most a lease and a sweep (issue 14), + 2 s for the reconnect on a shared machine.
    assert late_by <= LEASE + SWEEP + 2, f"attempt 2 started {late_by:.2f}s after it was due"
    assert jobs.body_runs(own_redis.client, job_id) == {1: 1, 2: 1}
    assert "broker connection was re-made" in worker.log_text()


def test_redis_unreachable_while_attempts_end_loses_nothing(own_redis, start_worker):
    workers = [start_worker(name, env=own_redis.env) for name in ("u1", "u2")]
    ids = [own_redis.send("sleepy", 1.5) for _ in range(2)]
    ids += [own_redis.send("sleepy", 1.5, 1) for _ in range(2)]  # the first attempt fails
    checker = InvariantChecker(own_redis.client, ids)
    wait_for(
        lambda: all(jobs.body_runs(own_redis.client, i).get(1) for i in ids),
        30, "every first attempt to start",
    )  # fmt: skip
    with Sampler(checker):
        own_redis.server.kill()
        time.sleep(4)  # the bodies end meanwhile: recording them waits for Redis
        own_redis.server.start()
        wait_for(own_redis.all_succeeded(ids), 90, "every job to succeed once Redis is back")
    checker.sample()
    checker.check_bodies()
    checker.assert_held()
    for job_id in ids:
        record = control_of(own_redis.store).status(job_id)
        assert record is not None and record.attempts >= 1
    _assert_survived(workers)


def _assert_survived(workers: list[WorkerProcess]) -> None:
    """The workers reconnected: none shut down on the lost broker connection."""
    for worker in workers:
        assert worker.process is not None and worker.process.poll() is None, worker.name
        assert "Unrecoverable error" not in worker.log_text(), worker.log_text()[-3000:]


# -- operators at the worst moment --------------------------------------------------


def _running_job(task: str, args: str) -> tuple[str, dict[str, str]]:
    """A job record at attempt 1, running, as a worker's claim leaves it."""
    job_id = str(uuid.uuid4())
    claimed = runtime().store.claim(
        job_id, 1, task=f"tests.jobs.{task}", policy="fast", owner="operator-test:1",
        lease_ms=60_000, payload=Payload(args, "{}", ""),
    )  # fmt: skip
    assert isinstance(claimed, Claimed)
    return job_id, claimed.fields


def _fail_attempt(
    job_id: str, fields: dict[str, str], *, countdown: bool, publisher: Publisher | None = None
) -> None:
    rt = runtime()
    attempt = Attempt(
        job_id=job_id, number=1, owner="operator-test:1", task=fields["task"],
        policy=rt.catalog.get("fast"), fields=fields, clock=RedisClock(rt.store.now_ms()),
    )  # fmt: skip
    record_failure(
        rt, publisher or durable_of(app).publisher, attempt,
        failure_from_exception(ConnectionError("refused")), Retry(delay=0.0, reason="test"),
        countdown_allowed=countdown,
    )  # fmt: skip


class _KillThenPublish:
    """The app's own publisher, with an operator's kill just before the publish."""

    def __init__(self, job_id: str, reason: str) -> None:
        self.job_id, self.reason = job_id, reason

    def publish(self, message: NextAttempt) -> None:
        control.kill(self.job_id, self.reason, revoke=False)
        durable_of(app).publisher.publish(message)


def _sweeper(publisher: Publisher | None = None) -> Sweeper:
    extension = durable_of(app)
    return Sweeper(extension.runtime, publisher or extension.publisher, extension.policy_for,
                   owner="operator-test")  # fmt: skip


def test_kill_while_the_body_runs_stops_it_for_good(redis_client, start_worker):
    worker = start_worker("w1")
    job_id = jobs.sleepy.delay(5).id
    wait_for(lambda: jobs.body_runs(redis_client, job_id).get(1), 30, "the body to start")
    assert control.kill(job_id, "operator: stop now").outcome == "killed"
    time.sleep(LEASE + 3 * SWEEP)  # past the lease: nothing recovers a killed job
    record = control.status(job_id)
    assert record is not None and record.state is JobState.KILLED
    assert jobs.body_runs(redis_client, job_id) == {1: 1}
    assert worker.process is not None and worker.process.poll() is None


def test_kill_between_recording_a_retry_and_publishing_it(redis_client, start_worker):
    """The retry's message is published after the kill: claim drops it."""
    job_id, fields = _running_job("add", "[1, 2]")
    _fail_attempt(job_id, fields, countdown=True,
                  publisher=_KillThenPublish(job_id, "operator: during publish"))  # fmt: skip
    worker = start_worker("w1")
    wait_for(lambda: f"job {job_id} " in worker.log_text() and "dropped: killed" in
             worker.log_text(), 30, "the message to be dropped")  # fmt: skip
    assert control.status(job_id).state is JobState.KILLED
    assert jobs.body_runs(redis_client, job_id) == {}


def test_kill_while_a_sweeper_dispatches_the_retry(redis_client, start_worker, monkeypatch):
    """Two moments: after the sweeper claimed the due entry, and after it marked
    the job queued but before it published. Neither runs the body again."""
    rt = runtime()
    before_mark, _ = _running_job("add", "[1, 2]")
    _fail_attempt(before_mark, rt.store.get(before_mark) or {}, countdown=False)
    store_dispatched = rt.store.dispatched

    def kill_then_mark(ids: Any, **options: Any) -> Any:
        control.kill(before_mark, "operator: during take_due", revoke=False)
        return store_dispatched(ids, **options)

    monkeypatch.setattr(rt.store, "dispatched", kill_then_mark)
    assert _sweeper().dispatch_due() == 0
    monkeypatch.undo()
    assert rt.store.redis.zscore(rt.store.keys.due, before_mark) is None

    before_publish, _ = _running_job("add", "[3, 4]")
    _fail_attempt(before_publish, rt.store.get(before_publish) or {}, countdown=False)
    killing = _KillThenPublish(before_publish, "operator: during publish")
    assert _sweeper(killing).dispatch_due() == 1
    worker = start_worker("w1")
    wait_for(lambda: f"job {before_publish} " in worker.log_text(), 30, "the message to come")
    time.sleep(2 * SWEEP)
    for job_id in (before_mark, before_publish):
        assert control.status(job_id).state is JobState.KILLED
        assert jobs.body_runs(redis_client, job_id) == {}
    assert "dropped: killed" in worker.log_text()


def test_revoke_sent_while_no_worker_is_online_is_lost(redis_client, start_worker):
    """What Flower's Revoke does (control.revoke, a pub/sub broadcast) reaches no
    one when no worker is online: that job runs. retryctl kill writes Redis first."""
    revoked = jobs.add.delay(2, 3).id
    killed = jobs.add.delay(4, 5).id
    app.control.revoke(revoked, terminate=True)  # Flower's POST /api/task/revoke
    assert control.kill(killed, "operator", record_unknown=True).outcome == "killed"
    worker = start_worker("w1")
    done = wait_for(
        lambda: (r := control.status(revoked)) and r.state is JobState.SUCCEEDED and r, 30,
        "the revoked job to run: nobody heard the revoke",
    )  # fmt: skip
    assert done.attempts == 1
    wait_for(lambda: "dropped: killed" in worker.log_text(), 30, "the killed job to be dropped")
    assert jobs.body_runs(redis_client, killed) == {}
    assert control.status(killed).state is JobState.KILLED


# -- many sweepers, a skewed clock ----------------------------------------------------


def _duplicate_hunt(redis_client, start_worker, *, workers: int, jobs_count: int,
                    failures: int) -> tuple[int, int]:  # fmt: skip
    for n in range(workers):
        start_worker(f"hunt{n}")
    ids = [jobs.flaky.delay(failures).id for _ in range(jobs_count)]
    ids += [jobs.fail_once_long.delay().id for _ in range(jobs_count // 10)]  # swept retries
    checker = InvariantChecker(redis_client, ids)
    with Sampler(checker, interval=1.0):
        wait_for(
            lambda: all((r := control.status(i)) and r.state is JobState.SUCCEEDED for i in ids),
            600, "every job to succeed",
        )  # fmt: skip
    attempts = checker.check_bodies()
    checker.assert_held()
    retries = attempts - len(ids)
    print(f"HUNT workers={workers} jobs={len(ids)} attempts={attempts} retries={retries} "
          "duplicates=0")  # fmt: skip
    return len(ids), retries


def test_three_workers_three_sweepers_never_run_an_attempt_twice(redis_client, start_worker):
    _, retries = _duplicate_hunt(redis_client, start_worker, workers=3, jobs_count=60,
                                 failures=5)  # fmt: skip
    assert retries >= 300


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_duplicate_hunt_over_thousands_of_retries(redis_client, start_worker):
    _, retries = _duplicate_hunt(redis_client, start_worker, workers=3, jobs_count=400,
                                 failures=8)  # fmt: skip
    assert retries >= 3000


LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


def _clock_ahead_env(seconds: int, tmp_path: Path) -> tuple[dict[str, str], str]:
    """Environment for a worker whose wall clock is ``seconds`` ahead.

    libfaketime (Debian's ``faketime``) shifts the whole process's clock; without
    it, a sitecustomize shifts Python's ``time.time``, which is the clock
    Celery's ETA timer compares a countdown with (kombu's ``to_timestamp``).
    """
    if LIBFAKETIME.exists():
        return {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": f"+{seconds}s"}, "libfaketime"
    shim = tmp_path / "clock-shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        f"import time\n_real = time.time\ntime.time = lambda: _real() + {seconds}\n"
    )
    return {"PYTHONPATH": f"{shim}:{ROOT}"}, "time.time shim (no libfaketime here)"


def test_worker_clock_ahead_runs_a_retry_early_by_at_most_the_skew(
    redis_client, start_worker, tmp_path
):
    skew = 3
    env, how = _clock_ahead_env(skew, tmp_path)
    worker = start_worker("skewed", env=env)
    ids = [jobs.fail_once_slowly.delay().id for _ in range(3)]
    wait_for(
        lambda: all((r := control.status(i)) and r.state is JobState.SUCCEEDED for i in ids),
        60, "every job to succeed",
    )  # fmt: skip
    early = []
    for job_id in ids:
        record = control.status(job_id)
        assert record is not None and record.attempts == 2
        started = jobs.body_started_ms(redis_client, job_id, 2)
        failed = runtime().store.field(job_id, "last_failure_at")
        assert started is not None and failed is not None
        due_ms = int(failed) + 3000  # the policy's countdown-3s backoff
        early_ms = due_ms - started
        early.append(early_ms)
        assert early_ms <= skew * 1000 + 100, f"{how}: attempt 2 ran {early_ms} ms early"
        assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1}
    assert "published by the sweeper" not in worker.log_text(), "a retry was dispatched twice"
    assert max(early) > 1000, f"{how}: the worker's clock was not shifted ({early} ms early)"
