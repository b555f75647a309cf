"""The job state on Redis Sentinel: settings, a store that follows the master, WAIT for
replicas, and real workers through a failover (issue 14).

Each test starts its own topology (tests/support/sentinel.py: 1 primary, 1 replica,
3 sentinels on loopback ports); the broker stays on the session's plain Redis.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests import jobs
from tests.conftest import wait_for
from tests.support.background import Background
from tests.support.bodyruns import RUNS_URL
from tests.support.invariants import InvariantChecker, Sampler, attempts_unaccounted
from tests.support.ops import control_of
from tests.support.sender import Sender
from tests.support.sentinel import Sentinels
from tests.support.topology import started_or_skipped
from tests.support.worker_process import ROOT
from workers import JobState
from workers.core.outcomes import Claimed, Payload
from workers.core.refusals import describe, refusal_reason
from workers.core.runtime import Runtime
from workers.core.settings import SettingsError, load_settings, redact_url
from workers.core.store import ReplicasBehind, Store
from workers.integration.appconf import sentinel_transport_options
from workers.integration.extension import celery_config

pytestmark = pytest.mark.integration

TWO = "sentinel://:pw@127.0.0.1:26379;sentinel://127.0.0.1:26380/2"


# -- settings (no topology) ---------------------------------------------------------


def test_sentinel_url_needs_the_master_name_and_is_redacted():
    with pytest.raises(SettingsError) as error:
        load_settings({"DURABLE_REDIS_URL": TWO})
    assert str(error.value).startswith("DURABLE_REDIS_URL names sentinels: set "
                                       "DURABLE_REDIS_SENTINEL_MASTER")  # fmt: skip
    assert "pw" not in str(error.value)
    settings = load_settings({"DURABLE_REDIS_URL": TWO, "DURABLE_REDIS_SENTINEL_MASTER": "m"})
    assert settings.redis_sentinel_master == "m"
    assert redact_url(TWO) == "sentinel://:***@127.0.0.1:26379;sentinel://127.0.0.1:26380/2"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sentinel://127.0.0.1;sentinel://h:1", "sentinel://HOST:PORT"),
        ("sentinel://h:1/0;sentinel://h:2", "only the last address"),
        ("sentinel://h:1;redis://h:2", "not a sentinel address"),
        ("sentinel://:a@h:1;sentinel://:b@h:2", "different logins"),
        ("memcached://h:1", "sentinel://"),
    ],
)
def test_bad_sentinel_urls_say_what_is_accepted(url, says):
    with pytest.raises(SettingsError) as error:
        load_settings({"DURABLE_REDIS_URL": url, "DURABLE_REDIS_SENTINEL_MASTER": "m"})
    assert says in str(error.value)
    assert ":a@" not in str(error.value) and ":b@" not in str(error.value)


def test_a_sentinel_broker_gets_master_name_and_sentinel_password():
    settings = load_settings({
        "DURABLE_BROKER_URL": TWO, "DURABLE_REDIS_SENTINEL_MASTER": "m",
        "DURABLE_REDIS_SENTINEL_PASSWORD": "spw",
    })  # fmt: skip
    options = celery_config(settings)["broker_transport_options"]
    assert options["master_name"] == "m"
    assert options["sentinel_kwargs"] == {"password": "spw"}
    assert "spw" not in repr(settings)
    plain = load_settings({"DURABLE_REDIS_SENTINEL_MASTER": "m"})
    assert sentinel_transport_options(plain) == {}  # a plain broker gets none
    assert "master_name" not in celery_config(plain)["broker_transport_options"]


@pytest.mark.parametrize(
    ("settings", "longest"),
    [
        ({"DURABLE_LEASE_SECONDS": "30"}, 2.0),  # the default: the back-off's own ceiling
        ({"DURABLE_LEASE_SECONDS": "3"}, 1.5),
        ({"DURABLE_LEASE_SECONDS": "3", "DURABLE_REDIS_MIN_REPLICAS": "1"}, 0.5),
        ({"DURABLE_LEASE_SECONDS": "2", "DURABLE_REDIS_MIN_REPLICAS": "1"}, 0.05),
    ],
)
def test_retry_pauses_leave_room_for_the_lease(settings, longest):
    # A try (one WAIT) and a pause take at most half the lease, 50 ms at least.
    assert Runtime(load_settings(settings)).longest_retry_pause == pytest.approx(longest)


def test_a_replica_wait_longer_than_half_the_lease_is_refused():
    with pytest.raises(SettingsError) as error:
        load_settings({"DURABLE_REDIS_MIN_REPLICAS": "1", "DURABLE_LEASE_SECONDS": "3",
                       "DURABLE_REDIS_MIN_REPLICAS_TIMEOUT": "2"})  # fmt: skip
    assert "DURABLE_REDIS_MIN_REPLICAS_TIMEOUT (2s)" in str(error.value)
    assert "half of DURABLE_LEASE_SECONDS (3s)" in str(error.value)
    # Without replicas to wait for, the timeout is never used: nothing to refuse.
    load_settings({"DURABLE_LEASE_SECONDS": "3", "DURABLE_REDIS_MIN_REPLICAS_TIMEOUT": "2"})


# -- a topology of the test's own ---------------------------------------------------


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[Sentinels]:
    topology = started_or_skipped(
        Sentinels(tmp_path / "ha", password="data-secret", sentinel_password="sent-secret"),
        "a Sentinel topology",
    )
    yield topology
    topology.stop()


def _store(topology: Sentinels, **settings: str) -> Store:
    env = {**topology.env, **{f"DURABLE_{k.upper()}": v for k, v in settings.items()}}
    return Store.from_settings(load_settings(env), socket_timeout=2, socket_connect_timeout=1)


def _claim(store: Store, job_id: str, token: str = "t1") -> object:
    return store.claim(job_id, 1, task="tests.jobs.add", policy="fast", owner="test:1",
                       lease_ms=60_000, payload=Payload("[1, 2]", "{}", ""),
                       token=token)  # fmt: skip


def test_store_follows_the_master_through_a_failover(sentinels):
    store = _store(sentinels)
    before = str(uuid.uuid4())
    assert isinstance(_claim(store, before), Claimed)
    # The same claim run again (its reply lost) is its own, not a drop.
    assert isinstance(_claim(store, before), Claimed)
    assert not isinstance(_claim(store, before, token="other"), Claimed)
    assert store.succeed(before, 1, "test:1", 60_000)
    assert store.succeed(before, 1, "test:1", 60_000)  # run again: still ok
    wait_for(lambda: sentinels.replica.client().exists(store.keys.job(before)), 5, "replication")
    sentinels.primary.kill()
    took = sentinels.wait_failover()
    # The promoted replica has an empty script cache: redis-py reloads on NOSCRIPT.
    after = str(uuid.uuid4())
    claimed = wait_for(lambda: _try(lambda: _claim(store, after)), 10, "a claim on the new master")
    assert isinstance(claimed, Claimed)
    assert store.get(before)["state"] == "succeeded"
    print(f"failover took {took:.1f}s")


def _try(action):  # type: ignore[no-untyped-def]
    try:
        return action()
    except redis.ConnectionError:
        return None


def test_min_replicas_waits_and_fewer_is_a_refusal(sentinels):
    store = _store(sentinels, redis_min_replicas="1")
    job_id = str(uuid.uuid4())
    assert isinstance(_claim(store, job_id), Claimed)
    # The write is on the replica as soon as the claim returns.
    assert Store(sentinels.replica.client()).field(job_id, "state") == "running"
    greedy = _store(sentinels, redis_min_replicas="2", redis_min_replicas_timeout="0.2")
    with pytest.raises(ReplicasBehind) as error:
        _claim(greedy, str(uuid.uuid4()))
    assert refusal_reason(error.value) == "no-replicas"
    # The operator is told which setting waited: the server's min-replicas-to-write is 0.
    said = describe(greedy.redis, sentinels.url, "no-replicas")
    assert "fewer replicas acknowledged the write than DURABLE_REDIS_MIN_REPLICAS asks " \
        "(1 connected)" in said, said


# -- real workers -------------------------------------------------------------------


def _env(topology: Sentinels, broker_url: str, **extra: str) -> dict[str, str]:
    return {**topology.env, "DURABLE_BROKER_URL": broker_url, **extra}


def test_jobs_retry_with_their_state_on_sentinel(sentinels, redis_server, start_worker):
    start_worker("s1", env=_env(sentinels, redis_server.url))
    sender = Sender(redis_server.url, _store(sentinels))
    ids = [sender.send("flaky", 2) for _ in range(6)]
    ids += [sender.send("fail_once_long") for _ in range(2)]  # the due set holds the retry
    wait_for(lambda: sender.all_succeeded(ids), 45, "every job to succeed on Sentinel")
    client = sender.store.redis
    for job_id in ids:
        assert control_of(sender.store).status(job_id).attempts >= 2
        assert all(n == 1 for n in jobs.body_runs(client, job_id).values())
    # retryctl reads through the same settings; no password is printed.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
    shown = subprocess.run(
        [sys.executable, "-m", "workers.ops.cli", "show", ids[0]], cwd=ROOT,
        env={**env, **sentinels.env}, text=True, capture_output=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "succeeded" in shown.stdout and ids[0] in shown.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "workers.ops.cli", "list", "--state", "succeeded"], cwd=ROOT,
        env={**env, **sentinels.env, "DURABLE_REDIS_SENTINEL_PASSWORD": "not-the-pw-42"}, text=True,
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert listed.returncode != 0  # the sentinels refuse a wrong password...
    assert "not-the-pw-42" not in listed.stdout + listed.stderr  # ...and it is not shown
    assert "data-secret" not in listed.stdout + listed.stderr, listed.stderr


class WriteProbe(Background):
    """Writes through the sentinels every 50 ms, as a transition does: ``longest`` is
    the longest gap between two writes that WAIT 1 confirmed (what the fleet with
    MIN_REPLICAS=1 could not record for), ``longest_plain`` between any two writes."""

    def __init__(self, store: Store) -> None:
        super().__init__("sentinel-write-probe", 0.05)
        self.store = store
        self.longest = 0.0
        self.longest_plain = 0.0
        self.last = self.last_plain = time.monotonic()

    def step(self) -> None:
        try:
            pipe = self.store.redis.pipeline(transaction=False)
            pipe.set("probe", str(time.time()))
            pipe.wait(1, 200)
            reached = int(pipe.execute()[1])
        except redis.RedisError:
            return
        now = time.monotonic()
        self.longest_plain = max(self.longest_plain, now - self.last_plain)
        self.last_plain = now
        if reached >= 1:
            self.longest = max(self.longest, now - self.last)
            self.last = now


def test_failover_under_load_loses_nothing(sentinels, redis_server, start_worker):
    # The bodies count their runs on the standalone broker Redis: a count the dying
    # primary never replicated could hide a duplicate.
    env = _env(sentinels, redis_server.url, DURABLE_REDIS_MIN_REPLICAS="1",
               **{RUNS_URL: redis_server.url})  # fmt: skip
    workers = [start_worker(name, env=env) for name in ("f1", "f2")]
    sender = Sender(redis_server.url, _store(sentinels))
    # 200 jobs, as issue 14 asks: 120 retrying three times, 40 on broker countdowns,
    # 40 in the due set.
    ids = [sender.send("flaky", 3) for _ in range(120)]
    ids += [sender.send("fail_once_slowly") for _ in range(40)]  # broker countdown retries
    ids += [sender.send("fail_once_long") for _ in range(40)]  # due-set retries
    checker = InvariantChecker(sender.store.redis, ids, replicas=1, runs=redis_server.client())
    wait_for(lambda: sum(sender.state(i) is JobState.RETRYING for i in ids) >= 60, 60,
             "retries to be scheduled")  # fmt: skip
    with Sampler(checker), WriteProbe(sender.store) as probe:
        killed_at = time.monotonic()
        sentinels.primary.kill()
        took = sentinels.wait_failover()
        # With MIN_REPLICAS=1 and one replica, writes wait until a replica is back.
        sentinels.rejoin_as_replica()
        wait_for(lambda: sender.all_succeeded(ids), 120, "every job to succeed after failover")
        recovered = time.monotonic() - killed_at
    checker.sample()
    attempts = checker.check_bodies()
    checker.assert_held()
    assert attempts >= len(ids) * 2
    records = {i: r for i in ids if (r := control_of(sender.store).status(i)) is not None}
    assert len(records) == len(ids)
    assert not attempts_unaccounted(records, redis_server.client())
    for worker in workers:
        assert worker.process is not None and worker.process.poll() is None, worker.name
    print(
        f"failover: sentinels promoted the replica in {took:.1f}s; writes stopped for "
        f"{probe.longest_plain:.1f}s, writes with WAIT 1 for {probe.longest:.1f}s; "
        f"every job done {recovered:.1f}s after the kill; {attempts} attempt bodies, "
        "0 duplicates"
    )


def test_a_claim_waiting_for_a_stopped_replica_keeps_its_lease(
    sentinels, redis_server, start_worker
):
    """While WAIT refuses, a worker retries its claim, and each try renews the lease.
    With a 2 s lease and 1 s WAITs, the pauses between tries must stay short enough
    that no sweeper takes the waiting worker's lease: that attempt would be judged
    an interruption without its body ever running (the attempt counted, no body)."""
    env = _env(sentinels, redis_server.url, DURABLE_REDIS_MIN_REPLICAS="1",
               DURABLE_LEASE_SECONDS="2", DURABLE_SWEEP_SECONDS="0.2",
               **{RUNS_URL: redis_server.url})  # fmt: skip
    start_worker("r1", env=env)
    sender = Sender(redis_server.url, _store(sentinels))
    replica = sentinels.replica.process
    assert replica is not None
    replica.send_signal(signal.SIGSTOP)
    try:
        # As many jobs as the worker's pool has processes: each claim is retried
        # in its own, none waits in the prefetch.
        ids = [sender.send("add", 1, 2) for _ in range(2)]
        wait_for(lambda: all(sender.state(i) is JobState.RUNNING for i in ids), 30,
                 "the claims to be applied (their WAITs refused)")  # fmt: skip
        # Four leases of refused WAITs: the old back-off (up to 2 s + a 1 s WAIT
        # between tries) let the 2 s lease run out between two tries.
        time.sleep(8)
        assert [sender.state(i) for i in ids] == [JobState.RUNNING] * len(ids)
    finally:
        replica.send_signal(signal.SIGCONT)
    wait_for(lambda: sender.all_succeeded(ids), 30, "the jobs to succeed once the replica is back")
    runs = redis_server.client()
    for job_id in ids:
        record = control_of(sender.store).status(job_id)
        assert record is not None and record.attempts == 1, record
        assert jobs.body_runs(runs, job_id) == {1: 1}


def test_broker_and_state_both_on_sentinel(sentinels, start_worker):
    """One topology for both, as a docker-compose deployment would: the broker gets
    master_name (and the sentinels' password) from DURABLE_REDIS_SENTINEL_*."""
    worker = start_worker("b1", env={**sentinels.env, "DURABLE_BROKER_URL": sentinels.url})
    settings = load_settings({**sentinels.env, "DURABLE_BROKER_URL": sentinels.url})
    sender = Sender(sentinels.url, _store(sentinels))
    sender.app.conf.broker_transport_options = celery_config(settings)[
        "broker_transport_options"
    ]
    ids = [sender.send("flaky", 1) for _ in range(4)]
    wait_for(lambda: sender.all_succeeded(ids), 40, "every job to succeed via a sentinel broker")
    sender.app.close()
    log = worker.log_text()
    assert "data-secret" not in log and "sent-secret" not in log, log[-2000:]
