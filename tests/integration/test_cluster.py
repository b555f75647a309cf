"""The job state on a Redis Cluster: sharded keys on real masters, sweepers across
shards, real workers through a SIGKILL, retryctl list/kill (issue 14).

The topologies are started here (tests/support/cluster.py: 3 masters on loopback
ports, made with ``redis-cli --cluster create``); the broker stays on the session's
standalone Redis, as it must (kombu has no Cluster transport).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import redis
from celery import Celery

from tests import jobs
from tests.conftest import TEST_SETTINGS, wait_for
from tests.integration.test_cli_list_scale import JOBS, JOBS_SLOW, write_retrying_jobs
from tests.support.background import Background
from tests.support.bodyruns import RUNS_URL
from tests.support.cli import run_retryctl
from tests.support.cluster import NODE_TIMEOUT_MS, Cluster
from tests.support.invariants import InvariantChecker, Sampler, attempts_unaccounted
from tests.support.ops import control_of
from tests.support.sender import Sender
from tests.support.topology import started_or_skipped
from tests.support.worker_process import ROOT
from workers import JobState
from workers.core.outcomes import Claimed, FailKind, Payload
from workers.core.refusals import refusal_reason
from workers.core.settings import load_settings
from workers.core.store import ReplicasBehind, Store
from workers.integration.appconf import AppConfigError, prepare_app
from workers.ops.control import AmbiguousJobId

pytestmark = pytest.mark.integration

SHARDS = 16  # far more than the 3 masters; small enough that every test reaches each


def _start(base: Path, **options: int) -> Cluster:
    return started_or_skipped(Cluster(base, **options), "a Redis Cluster")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    topology = _start(tmp_path_factory.mktemp("cluster"))
    yield topology
    topology.stop()


@pytest.fixture
def fresh(cluster: Cluster) -> Cluster:
    """The module's cluster, emptied."""
    cluster.client().flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    return cluster


def _env(topology: Cluster, broker_url: str, **extra: str) -> dict[str, str]:
    return {"DURABLE_REDIS_URL": topology.url, "DURABLE_BROKER_URL": broker_url,
            "DURABLE_REDIS_SHARDS": str(SHARDS), **extra}  # fmt: skip


def _store(topology: Cluster, broker_url: str = "redis://127.0.0.1:1/0") -> Store:
    return Store.from_settings(load_settings(_env(topology, broker_url)), socket_timeout=5)


def _claim(store: Store, job_id: str, owner: str = "test:1") -> object:
    return store.claim(job_id, 1, task="tests.jobs.add", policy="fast", owner=owner,
                       lease_ms=60_000, payload=Payload("[1, 2]", "{}", ""),
                       token="t1")  # fmt: skip


def _fail(store: Store, job_id: str, cap: int | None = None) -> FailKind:
    return store.fail(job_id, 1, "test:1", event="error", error="E", reason="r",
                      give_up=False, max_retrying=cap, retention_ms=60_000).kind  # fmt: skip


def test_a_project_app_with_a_cluster_broker_is_refused_at_worker_start():
    app = Celery("proj", broker="redis+cluster://:pw-42@127.0.0.1:7000")
    app.conf.task_serializer = "json"
    with pytest.raises(AppConfigError) as error:
        prepare_app(app, load_settings({}), task_events=True)
    assert "kombu has no Redis Cluster transport" in str(error.value)
    assert "pw-42" not in str(error.value)


# -- the store on three masters -------------------------------------------------------


def test_a_job_s_transitions_run_on_one_master_and_jobs_spread_over_all(fresh):
    store = _store(fresh)
    assert store.cluster and store.layout.shards == SHARDS
    ids = [f"job-{n}" for n in range(60)]
    for job_id in ids:
        assert isinstance(_claim(store, job_id), Claimed)
        assert _fail(store, job_id) is FailKind.RETRY
    # Each job's hash and the due set it is in live on the same master...
    for job_id in ids[:10]:
        keys = store.layout.of(job_id)
        assert fresh.master_of(keys.job(job_id)).port == fresh.master_of(keys.due).port
    # ...and the jobs are spread over every master.
    masters = {fresh.master_of(store.layout.of(i).job(i)).port for i in ids}
    assert len(masters) == 3
    assert store.index_size(store.keys.due) == 60
    assert store.retrying_counts() == {"fast": 60}
    assert store.stats()["failures:error"] == 60
    assert store.index_sizes()["due"] == 60
    _, due = store.take_due(100, redispatch_ms=60_000)
    assert sorted(due) == sorted(ids)
    published = [job for job in store.dispatched(due) if job.state == "queued"]
    assert len(published) == 60
    # Taken once: pushed back by the redispatch delay on every shard.
    assert store.take_due(100, redispatch_ms=60_000)[1] == []


def test_max_retrying_counts_waiting_jobs_in_every_shard(fresh):
    store = _store(fresh)
    ids = [f"capped-{n}" for n in range(12)]
    assert len({store.layout.shard_of(i) for i in ids}) >= 6  # many shards, many masters
    kinds = []
    for job_id in ids:
        _claim(store, job_id)
        kinds.append(_fail(store, job_id, cap=5))
    assert kinds.count(FailKind.RETRY) == 5 and kinds.count(FailKind.PARKED) == 7
    assert sum(store.retrying_counts().values()) == 5
    parked = store.parked_ids(100)
    assert len(parked) == 7
    # No room: unparking refuses across shards too; a kill of a waiting job makes room.
    assert store.resume(parked[0], 5, new_streak=False)[0] == "full"
    waiting = [i for i, kind in zip(ids, kinds, strict=True) if kind is FailKind.RETRY]
    assert control_of(store).kill(waiting[0]).done
    assert store.resume(parked[0], 5, new_streak=False)[0] == "resumed"


def test_two_sweepers_from_different_shards_take_each_due_retry_once(fresh):
    store = _store(fresh)
    other = _store(fresh)
    ids = [f"due-{n}" for n in range(200)]
    for job_id in ids:
        _claim(store, job_id)
        _fail(store, job_id)
    taken: list[str] = []
    a, b = store.shard_numbers(0), other.shard_numbers(SHARDS // 2)
    while True:
        _, first = store.take_due(store.per_shard_limit(50), 60_000, shards=a)
        _, second = other.take_due(other.per_shard_limit(50), 60_000, shards=b)
        if not first and not second:
            break
        assert len(first) <= SHARDS * store.per_shard_limit(50)  # the bound per pass
        taken += first + second
    assert sorted(taken) == sorted(ids)  # every retry once, none twice


def test_list_pause_and_prefix_lookups_read_every_shard(fresh):
    store = _store(fresh)
    ids = [f"list-{n:03d}" for n in range(40)]
    for job_id in ids:
        _claim(store, job_id)
    listed = control_of(store).list_jobs(state=JobState.RUNNING, limit=25)
    assert len(listed) == 25 and len({r.id for r in listed}) == 25
    assert len(control_of(store).list_jobs(state=JobState.RUNNING, limit=100)) == 40
    with pytest.raises(AmbiguousJobId) as several:  # ids from every shard's indexes
        control_of(store).resolve("list-01")
    assert len(several.value.candidates) == 10
    _claim(store, "solo-7f3a9c")
    assert control_of(store).resolve("solo-7f3") == "solo-7f3a9c"
    assert store.pause("policy:fast", "{}")
    assert store.pauses() == {"policy:fast": "{}"}
    assert all(fresh.client().hget(k.pauses, "policy:fast") for k in store.layout.all)
    assert store.end_pause("policy:fast") and store.pauses() == {}


def test_min_replicas_waits_on_the_scripts_own_master(fresh):
    """WAIT has no key: it must run on the connection of the master that ran the
    script. Without replicas every transition is a NOREPLICAS refusal (retried by
    the caller), on whichever master the job's shard lives."""
    env = _env(fresh, "redis://127.0.0.1:1/0", DURABLE_REDIS_MIN_REPLICAS="1",
               DURABLE_REDIS_MIN_REPLICAS_TIMEOUT="0.1")  # fmt: skip
    store = Store.from_settings(load_settings(env), socket_timeout=5)
    masters = {}
    for n in range(200):  # a job on each master
        masters.setdefault(fresh.master_of(store.layout.of(f"r{n}").due).port, f"r{n}")
    assert len(masters) == 3
    for job_id in masters.values():
        with pytest.raises(ReplicasBehind) as error:
            _claim(store, job_id)
        assert refusal_reason(error.value) == "no-replicas"
        assert "0 of the 1 replicas" in str(error.value)


def test_a_lost_master_is_an_unreachable_redis_for_its_shards_only(tmp_path):
    """Without a replica to promote, a SIGKILLed master's shards wait (redis-py's
    "slot not covered" is a ConnectionError for the layer, retried like one); the
    other masters' shards keep recording (cluster-require-full-coverage no)."""
    topology = _start(tmp_path / "lost")
    try:
        store = _store(topology)
        victim = topology.master_of(store.layout.shard(0).due)
        lost = [f"j{n}" for n in range(200) if topology.master_of(
            store.layout.of(f"j{n}").due) is victim][:5]  # fmt: skip
        kept = [f"k{n}" for n in range(200) if topology.master_of(
            store.layout.of(f"k{n}").due) is not victim][:5]  # fmt: skip
        victim.kill()
        errors: set[str] = set()
        deadline = time.monotonic() + 3 * NODE_TIMEOUT_MS / 1000 + 2
        while time.monotonic() < deadline:
            for job_id in lost:
                try:
                    _claim(store, job_id)
                except redis.RedisError as exc:  # anything else would escape the layer
                    errors.add(type(exc).__name__)
            time.sleep(0.2)
        assert errors and errors <= {"ConnectionError", "TimeoutError", "ClusterDownError"}
        for job_id in kept:
            assert isinstance(_claim(store, job_id), Claimed)
    finally:
        topology.stop()


# -- real workers ---------------------------------------------------------------------

PRODUCER = """
import json, sys
from tests import jobs
groups = json.loads(sys.argv[1])
print(json.dumps([[getattr(jobs, name).delay(*args).id for name, args in g] for g in groups]))
"""


def _enqueue(env: dict[str, str], groups: list[list[tuple[str, list[object]]]]) -> list[
    list[str]
]:  # fmt: skip
    """Job ids, group by group, enqueued by a producer process with ``env``'s settings."""
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
    run_env.update({**TEST_SETTINGS, **env, "PYTHONPATH": str(ROOT)})
    made = subprocess.run([sys.executable, "-c", PRODUCER, json.dumps(groups)], cwd=ROOT,
                          env=run_env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    return cast(list[list[str]], json.loads(made.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("lost", ["another master", "the fleet's master"])
def test_a_lost_master_holds_up_only_its_own_shards_retries(tmp_path, redis_server,
                                                            start_worker, lost):  # fmt: skip
    """A master SIGKILLed with no replica to promote: the sweepers keep publishing the
    due retries of the other masters' shards (they sweep master by master), and the
    lost master's jobs finish once it is back, each attempt's body run once. So it
    goes when the lost master holds the fleet's keys (the sweepers' heartbeats) too."""
    topology = _start(tmp_path / "sweep")
    try:
        env = {**_env(topology, redis_server.url), RUNS_URL: redis_server.url}
        store = _store(topology, redis_server.url)
        fleet_master = topology.master_of(store.fleet.nodes)  # heartbeats live there
        victim = fleet_master if lost == "the fleet's master" else next(
            node for node in topology.nodes[: topology.masters] if node is not fleet_master
        )  # fmt: skip
        start_worker("m1", env=env)
        sender = Sender(redis_server.url, store, name="lost-master-client")
        # Each retry waits 10 minutes in the due set: none comes due by itself, so the
        # test, not the machine's speed, says when (retry-now makes it due; a sweeper
        # still publishes it).
        (ids,) = _enqueue(env, [[("fail_once_wait_10m", [])] * 40])
        on_victim = [i for i in ids if topology.master_of(store.layout.of(i).due) is victim]
        elsewhere = [i for i in ids if i not in on_victim]
        assert on_victim and elsewhere

        def due_now(group: list[str]) -> None:
            for job_id in group:
                assert store.retry_now(job_id) == ["ok"], job_id

        # Every first attempt over first: a message of the lost master's shards taken
        # after the kill holds a pool process in its claim for DURABLE_REDIS_WAIT_SECONDS
        # (DEPLOYING.md), which would slow the other masters' jobs, not stop them.
        wait_for(lambda: all(sender.state(i) is JobState.RETRYING for i in ids), 60,
                 "every first attempt to fail and its retry to wait")  # fmt: skip
        victim.kill()
        due_now(elsewhere)
        wait_for(lambda: sender.all_succeeded(elsewhere), 60,
                 "the other masters' retries to run while one master is down")  # fmt: skip
        victim.start()  # AOF on: its jobs are as they were
        topology.wait_ready(30)
        due_now(on_victim)
        wait_for(lambda: sender.all_succeeded(ids), 60, "the lost master's jobs to finish")
        runs = redis_server.client()
        assert {i: jobs.body_runs(runs, i) for i in ids} == {i: {1: 1, 2: 1} for i in ids}
        sender.app.close()
    finally:
        topology.stop()




def test_retrying_jobs_on_workers_with_a_sigkill_list_and_kill(fresh, redis_server,
                                                               start_worker):  # fmt: skip
    env = _env(fresh, redis_server.url)
    first = start_worker("c1", env=env)
    store = _store(fresh, redis_server.url)
    sender = Sender(redis_server.url, store, name="cluster-client")
    # Enqueued as an application does (apply_async writes each record on the cluster
    # first), so first attempts the SIGKILLed worker prefetched are published again.
    sleepers, ids, (doomed,) = _enqueue(env, [
        [("sleepy", [3])] * 2,
        [("flaky", [2])] * 12 + [("fail_once_long", [])] * 4  # due-set retries
        + [("fail_once_slowly", [])] * 4,  # broker countdowns
        [("fails_under_inline_policy", [])],  # retries a minute apart
    ])  # fmt: skip
    checker = InvariantChecker(store.redis, ids + sleepers + [doomed], shards=SHARDS)
    with Sampler(checker):
        wait_for(lambda: any(jobs.body_runs(store.redis, s) for s in sleepers), 30,
                 "a sleepy body to start")  # fmt: skip
        first.kill()  # SIGKILL mid-run: its attempts come back through the leases
        start_worker("c2", env=env)
        start_worker("c3", env=env)
        wait_for(lambda: sender.state(doomed) is JobState.RETRYING, 30, "a retry to wait")
        listed = run_retryctl(fresh.url, "list", "--json",
                              settings={"DURABLE_BROKER_URL": redis_server.url,
                                        "DURABLE_REDIS_SHARDS": str(SHARDS)})  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert doomed in {job["id"] for job in json.loads(listed.stdout)}
        killed = run_retryctl(fresh.url, "kill", doomed, "--reason", "test",
                              settings={"DURABLE_BROKER_URL": redis_server.url,
                                        "DURABLE_REDIS_SHARDS": str(SHARDS)})  # fmt: skip
        assert killed.returncode == 0, killed.stderr
        try:
            wait_for(lambda: sender.all_succeeded(ids + sleepers), 90,
                     "every job to succeed on the cluster")  # fmt: skip
        except AssertionError as timeout:
            left = {i: store.get(i) for i in ids + sleepers if sender.state(i) is not
                    JobState.SUCCEEDED}  # fmt: skip
            raise AssertionError(f"{timeout}; not done: {left}") from None
    checker.sample()
    attempts = checker.check_bodies()
    checker.assert_held()
    assert sender.state(doomed) is JobState.KILLED
    assert jobs.body_runs(store.redis, doomed) == {1: 1}
    assert control_of(store).retry_now(doomed).outcome == "refused"  # killed for good
    assert attempts >= 3 * 12 + 2 * 8
    assert any(control_of(store).status(s).attempts >= 2 for s in sleepers)  # interrupted
    # Metrics and status read through the same settings.
    assert store.index_sizes()["succeeded"] >= len(ids)
    assert store.stats().get("recoveries:lease", 0) >= 1
    sender.app.close()


class WriteProbe(Background):
    """Writes to two keys every 50 ms, one on the master the test kills and one on
    another: ``longest[name]`` is the longest gap between two writes that succeeded."""

    def __init__(self, client: redis.RedisCluster, keys: dict[str, str]) -> None:
        super().__init__("cluster-write-probe", 0.05)
        self.client = client
        self.keys = keys
        self.longest = dict.fromkeys(keys, 0.0)
        self.last = dict.fromkeys(keys, time.monotonic())

    def step(self) -> None:
        for name, key in self.keys.items():
            try:
                self.client.hincrby(key, "probe", 1)
            except redis.RedisError:
                continue
            now = time.monotonic()
            self.longest[name] = max(self.longest[name], now - self.last[name])
            self.last[name] = now


@pytest.fixture
def ha_cluster(tmp_path: Path) -> Iterator[Cluster]:
    topology = _start(tmp_path / "ha", replicas=1)
    yield topology
    topology.stop()


def test_a_master_failover_under_load_loses_no_job(ha_cluster, redis_server, start_worker):
    """SIGKILL a master (it has a replica) while 200 jobs retry on 2 workers, with
    ``DURABLE_REDIS_MIN_REPLICAS=1``: every job finishes, none is stranded, no
    attempt's body runs twice and no replicated attempt count goes backwards. The
    killed master comes back as its successor's replica (until then that master
    has none, and its shards' transitions wait, as on Sentinel)."""
    # The bodies count their runs on the standalone Redis: a failover cannot lose them.
    env = {**_env(ha_cluster, redis_server.url), RUNS_URL: redis_server.url,
           "DURABLE_REDIS_MIN_REPLICAS": "1"}  # fmt: skip
    workers = [start_worker(name, env=env) for name in ("f1", "f2")]
    store = _store(ha_cluster, redis_server.url)
    sender = Sender(redis_server.url, store, name="failover-client")
    (ids,) = _enqueue(env, [
        [("flaky", [3])] * 140 + [("fail_once_slowly", [])] * 30 + [("fail_once_long", [])] * 30
    ])  # fmt: skip
    checker = InvariantChecker(store.redis, ids, shards=SHARDS, runs=redis_server.client(),
                               replicas=1)  # fmt: skip
    victim = ha_cluster.master_of(store.layout.shard(0).due)
    replica = ha_cluster.replica_of(victim)
    elsewhere = next(n for n in range(SHARDS)
                     if ha_cluster.master_of(store.layout.shard(n).due) is not victim)  # fmt: skip
    wait_for(lambda: sum(sender.state(i) is JobState.RETRYING for i in ids) >= 40, 60,
             "retries to be scheduled")  # fmt: skip
    probe_keys = {"killed master": store.layout.shard(0).stats,
                  "other masters": store.layout.shard(elsewhere).stats}  # fmt: skip
    with Sampler(checker) as sampler, WriteProbe(store.redis, probe_keys) as probe:
        killed_at = time.monotonic()
        victim.kill()
        promoted = ha_cluster.wait_promoted(replica)
        victim.start()  # rejoins as the new master's replica: WAIT 1 is met there again
        wait_for(lambda: sender.all_succeeded(ids), 120, "every job to succeed after failover")
        recovered = time.monotonic() - killed_at
    during = checker.samples
    ha_cluster.wait_ready(30)
    checker.sample()
    attempts = checker.check_bodies()
    checker.assert_held()
    assert during > 0, f"no sample confirmed during the failover ({sampler.failed_samples} failed)"
    assert attempts >= len(ids) * 2
    records = {i: r for i in ids if (r := control_of(store).status(i)) is not None}
    assert len(records) == len(ids)
    assert not attempts_unaccounted(records, redis_server.client())
    for worker in workers:
        assert worker.process is not None and worker.process.poll() is None, worker.name
    print(
        f"\ncluster failover (MIN_REPLICAS=1): replica promoted {promoted:.1f}s after the "
        f"SIGKILL; writes to the killed master's slots stopped for "
        f"{probe.longest['killed master']:.1f}s, to the other masters' for "
        f"{probe.longest['other masters']:.1f}s; every job done {recovered:.1f}s after the "
        f"kill; {attempts} attempt bodies; {during} samples confirmed during it, "
        f"{sampler.failed_samples} failed"
    )


# -- scale ----------------------------------------------------------------------------


def test_retryctl_list_over_retrying_jobs_on_three_masters(fresh, request):
    """retryctl list as a command over 100,000 retrying jobs (--slow; 20,000 by default)
    spread over 3 masters: a page of each shard's due index, merged by score. The
    figure is printed (-s) and recorded in docs/PERFORMANCE.md; no timing assertion."""
    count = JOBS_SLOW if request.config.getoption("--slow") else JOBS
    store = Store.from_url(fresh.url, shards=64)  # the cluster default
    started = time.perf_counter()
    write_retrying_jobs(store, count)
    setup = time.perf_counter() - started
    assert store.index_size(store.keys.due) == count
    assert sum(store.retrying_counts().values()) == count
    settings = {"DURABLE_BROKER_URL": "redis://127.0.0.1:1/0"}
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        listed = run_retryctl(fresh.url, "list", "--json", settings=settings)
        timings.append(time.perf_counter() - started)
        assert listed.returncode == 0, listed.stderr
    shown = [job["id"] for job in json.loads(listed.stdout)]
    assert shown == [f"bulk-{n:06d}" for n in range(50)]  # soonest due first, over shards
    started = time.perf_counter()
    table = run_retryctl(fresh.url, "list", settings=settings)
    as_table = time.perf_counter() - started
    assert table.returncode == 0 and table.stdout.count("bulk-") == 50, table.stderr
    started = time.perf_counter()
    in_process = control_of(store).list_jobs(limit=50)
    list_jobs = time.perf_counter() - started
    assert len(in_process) == 50
    started = time.perf_counter()
    assert run_retryctl(fresh.url, "--help", settings=settings).returncode == 0
    startup = time.perf_counter() - started
    print(f"\n{count} retrying jobs on 3 masters (64 shards) written in {setup:.1f}s; "
          f"retryctl list --json as a command: {', '.join(f'{t:.2f}s' for t in timings)}; "
          f"as a table: {as_table:.2f}s; list_jobs in process {list_jobs * 1000:.0f} ms; "
          f"retryctl --help (Python start and imports) {startup:.2f}s")


def test_retryctl_list_shows_the_other_masters_jobs_while_one_is_down(tmp_path):
    """A master lost with no replica to promote: ``retryctl list`` shows the jobs of
    every shard it can read, names the shards it could not, and exits 3, so a
    script cannot take the list for the whole (it used to show nothing: exit 3)."""
    topology = _start(tmp_path / "list")
    try:
        store = Store.from_url(topology.url, shards=SHARDS)
        write_retrying_jobs(store, 60)
        ids = [f"bulk-{n:06d}" for n in range(60)]
        victim = topology.master_of(store.layout.shard(0).due)
        lost_shards = sorted(
            n for n in range(SHARDS) if topology.master_of(store.layout.shard(n).due) is victim
        )  # fmt: skip
        lost = [i for i in ids if topology.master_of(store.layout.of(i).due) is victim]
        assert lost and len(lost) < len(ids)
        victim.kill()
        settings = {"DURABLE_BROKER_URL": "redis://127.0.0.1:1/0",
                    "DURABLE_REDIS_SHARDS": str(SHARDS)}  # fmt: skip
        listed = run_retryctl(topology.url, "list", "--json", "--limit", "100",
                              settings=settings)  # fmt: skip
        assert listed.returncode == 3, listed.stderr
        shown = [job["id"] for job in json.loads(listed.stdout)]
        assert shown == [i for i in ids if i not in lost]  # soonest due first, as ever
        warning = listed.stderr.strip().splitlines()[-1]
        tags = ", ".join(store.layout.shard(n).tag for n in lost_shards)
        assert warning.startswith(f"retryctl: warning: shards {tags} did not answer"), warning
        assert "not listed" in warning
        table = run_retryctl(topology.url, "list", "--limit", "100", settings=settings)
        assert table.returncode == 3 and table.stdout.count("bulk-") == len(ids) - len(lost)
    finally:
        topology.stop()
