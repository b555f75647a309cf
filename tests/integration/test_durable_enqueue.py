"""Durable from enqueue: the record exists before the first message is published,
so no path from ``apply_async`` to the first claim can lose a job or hold it
for the broker's visibility timeout (an hour by default)."""

from __future__ import annotations

import json
import time

import pytest
from celery import Celery, group
from celery.signals import after_task_publish

from tests import jobs
from tests.conftest import TEST_SETTINGS, wait_for
from tests.support.cli import run_retryctl
from tests.support.monitor import commands_during
from tests.support.ops import control, runtime
from tests.support.records import in_state
from workers import JobState, durable_task, install
from workers.core.errors import EnqueueError, NotJSONSerializable
from workers.core.settings import load_settings
from workers.ops.embedded_redis import RedisServer, free_port

LEASE = float(TEST_SETTINGS["DURABLE_LEASE_SECONDS"])
SWEEP = float(TEST_SETTINGS["DURABLE_SWEEP_SECONDS"])


def _redis_now_ms(redis_client) -> int:
    seconds, micros = redis_client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_prefetched_first_attempts_of_a_sigkilled_worker_run_on_the_next(
    redis_client, start_worker
):
    """One busy pool process, three first attempts in its prefetch buffer: SIGKILL."""
    first = start_worker("w1", concurrency=1)
    busy = jobs.sleepy.delay(60).id
    wait_for(lambda: jobs.body_runs(redis_client, busy).get(1), 30, "the busy body to start")
    waiting = [jobs.add.delay(i, i).id for i in range(3)]
    # All three left the queue: the worker holds them (prefetch), none started.
    wait_for(lambda: redis_client.llen("celery") == 0, 30, "the worker to prefetch them")
    assert all(in_state(i, JobState.QUEUED) for i in waiting)
    killed_at = _redis_now_ms(redis_client)
    first.kill()
    start_worker("w2")
    for job_id in waiting:
        wait_for(lambda j=job_id: in_state(j, JobState.SUCCEEDED), 60, f"{job_id} to succeed")
    for job_id in waiting:
        assert jobs.body_runs(redis_client, job_id) == {1: 1}
        started = jobs.body_started_ms(redis_client, job_id, 1)
        assert started is not None
        late_by = (started - killed_at) / 1000
        assert late_by <= LEASE + SWEEP + 6, f"{job_id} ran {late_by:.1f}s after the kill"


def test_first_countdown_held_by_a_sigkilled_worker_runs_once_when_due(
    redis_client, start_worker
):
    first = start_worker("w1")
    result = jobs.add.apply_async((2, 3), countdown=3)
    due_ms = int(runtime().store.field(result.id, "next_attempt_at") or 0)
    wait_for(lambda: redis_client.llen("celery") == 0, 30, "w1 to hold the countdown message")
    first.kill()
    start_worker("w2")
    wait_for(lambda: in_state(result.id, JobState.SUCCEEDED), 60, "the job to run")
    assert jobs.body_runs(redis_client, result.id) == {1: 1}
    started = jobs.body_started_ms(redis_client, result.id, 1)
    assert started is not None and started >= due_ms, "it ran before its countdown"
    late_by = (started - due_ms) / 1000
    assert late_by <= LEASE + SWEEP + 4, f"ran {late_by:.1f}s after it was due"


def test_first_countdown_longer_than_the_visibility_timeout_runs_once_not_early(
    redis_client, start_worker
):
    """Longer than DURABLE_MAX_COUNTDOWN: only the due set holds it, never the broker."""
    start_worker("w1", env={"DURABLE_VISIBILITY_TIMEOUT": "2", "DURABLE_MAX_COUNTDOWN": "1"})
    result = jobs.add.apply_async((1, 1), countdown=5)
    assert redis_client.llen("celery") == 0, "nothing is published before it is due"
    record = control.status(result.id)
    assert record is not None and record.state is JobState.QUEUED
    due_ms = int(record.next_attempt_at.timestamp() * 1000)
    wait_for(lambda: in_state(result.id, JobState.SUCCEEDED), 60, "the job to run")
    time.sleep(2 + SWEEP)  # past another visibility timeout: no second delivery
    assert jobs.body_runs(redis_client, result.id) == {1: 1}
    started = jobs.body_started_ms(redis_client, result.id, 1)
    assert started is not None and started >= due_ms


def _identity(x: int) -> int:
    return x


def _own_app(redis_url: str, broker_url: str) -> Celery:
    own = Celery("enqueue-test", set_as_current=False)
    own.conf.update(broker_url=broker_url, task_publish_retry=False,
                    broker_connection_retry=False, broker_connection_max_retries=0)  # fmt: skip
    settings = load_settings().model_copy(update={"redis_url": redis_url})
    install(own, settings=settings)
    return own


def test_enqueue_with_the_state_redis_down_raises_and_publishes_nothing(redis_client, redis_server):
    dead = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    own = _own_app(dead, redis_server.url)
    job = durable_task(app=own, policy="fast", name="enqueue_test.add")(_identity)
    with pytest.raises(EnqueueError) as raised:
        job.delay(1)
    message = str(raised.value)
    assert "redis://:***@127.0.0.1" in message and "nothing was published" in message
    assert "hunter2" not in message
    assert redis_client.llen("celery") == 0


def test_a_broker_that_refuses_the_message_leaves_no_record(redis_client, redis_server):
    own = _own_app(redis_server.url, f"redis://127.0.0.1:{free_port()}/0")
    job = durable_task(app=own, policy="fast", name="enqueue_test.refused")(_identity)
    job_id = "refused-by-the-broker-1"
    with pytest.raises(Exception) as raised:
        job.apply_async((1,), task_id=job_id)
    assert not isinstance(raised.value, EnqueueError)  # the broker's own error
    assert runtime().store.get(job_id) is None, "a refused job must not run later"


def test_an_interrupt_after_the_message_is_out_keeps_the_record(redis_client, start_worker):
    """Ctrl-C between kombu's push and ``apply_async`` returning (here: in an
    ``after_task_publish`` handler; Celery's signals pass on only a BaseException): the
    message is out, so the record and its options stay, and the job runs once."""

    def interrupt(sender: str, **_: object) -> None:
        if sender == jobs.add.name:
            raise KeyboardInterrupt

    job_id = f"interrupted-{time.time_ns()}"
    after_task_publish.connect(interrupt, weak=False)
    try:
        with pytest.raises(KeyboardInterrupt):
            jobs.add.apply_async((1, 2), task_id=job_id, link=jobs.add.s(10))
    finally:
        after_task_publish.disconnect(interrupt)
    assert redis_client.llen("celery") == 1, "the message went out"
    record = runtime().store.get(job_id)
    assert record is not None and record["state"] == "queued", record
    assert "link" in json.loads(record.get("opts") or "{}"), "its retries keep the link"
    start_worker("w1")
    wait_for(lambda: in_state(job_id, JobState.SUCCEEDED), 30, "the job to run")
    assert jobs.body_runs(redis_client, job_id) == {1: 1}


def test_queued_jobs_are_listed_shown_and_killed_without_force(
    redis_client, redis_server, start_worker
):
    job_id = jobs.add.delay(1, 2).id
    listed = run_retryctl(redis_server.url, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert job_id in listed.stdout and '"queued"' in listed.stdout
    shown = run_retryctl(redis_server.url, "show", job_id)
    assert shown.returncode == 0 and "queued" in shown.stdout, shown.stdout + shown.stderr
    killed = run_retryctl(redis_server.url, "kill", job_id)
    assert killed.returncode == 0, killed.stderr
    worker = start_worker("w1")
    wait_for(lambda: "dropped: killed" in worker.log_text(), 30, "the message to be dropped")
    assert jobs.body_runs(redis_client, job_id) == {}


def test_a_worker_death_copies_at_most_what_the_fleet_could_hold(redis_client, start_worker):
    """200 first attempts wait on a queue nobody consumes; a worker dies. Its sweeper's
    peers copy the oldest few (the fleet's prefetch capacity), not the backlog."""
    backlog = [jobs.add.delay(i, 0).id for i in range(200)]
    store = runtime().store
    store.heartbeat("sweeper:ghost@host:1", int(LEASE * 1000), capacity=4)
    worker = start_worker("w1", concurrency=1, queues="elsewhere")
    text = "attempt=1 published again by the sweeper"
    wait_for(lambda: text in worker.log_text(), 30, "the ghost's death to be noticed")
    time.sleep(3 * SWEEP)  # a few more passes: no more copies without another death
    copies = worker.log_text().count(text)
    # The ghost held at most 4; the live worker (prefetch 4 x 1) is counted too.
    assert copies == 8, copies
    assert redis_client.llen("celery") == 200 + 8
    assert all(in_state(i, JobState.QUEUED) for i in backlog)


def test_enqueue_to_a_redis_that_refuses_writes_raises_and_publishes_nothing(
    redis_client, redis_server, tmp_path
):
    state = RedisServer(tmp_path / "full-redis", appendonly=False)
    state.start()
    try:
        state.client().config_set("maxmemory-policy", "noeviction")
        state.client().config_set("maxmemory", 1)  # below what an empty server uses
        own = _own_app(state.url, redis_server.url)
        job = durable_task(app=own, policy="fast", name="enqueue_test.full")(_identity)
        with pytest.raises(EnqueueError, match=r"refuses writes \(out-of-memory\)"):
            job.delay(1)
        assert redis_client.llen("celery") == 0
        state.client().config_set("maxmemory", 0)
        assert state.client().dbsize() == 0, "nothing half-made"
    finally:
        state.kill()


# -- a group's members: their records in one round trip (workers/integration/group_batch.py)


def test_a_group_one_of_whose_records_redis_refuses_publishes_none(redis_client, redis_server):
    own = _own_app(redis_server.url, redis_server.url)
    job = durable_task(app=own, policy="fast", name="enqueue_test.grouped")(_identity)
    store = runtime().store
    ids = [f"grouped-{n}-{time.time_ns()}" for n in range(5)]
    # The third member's key holds a string: its enqueue script fails (WRONGTYPE)
    # while the other four are written, in the same pipeline.
    redis_client.set(store.keys.job(ids[2]), "not a hash")
    members = [job.s(n).set(task_id=job_id) for n, job_id in enumerate(ids)]
    with pytest.raises(EnqueueError) as raised:
        group(members).apply_async()
    assert ids[2] in str(raised.value) and "nothing was published" in str(raised.value)
    assert redis_client.llen("celery") == 0
    for job_id in ids[:2] + ids[3:]:
        assert store.get(job_id) is None, "the records written with it are removed again"
    assert redis_client.get(store.keys.job(ids[2])) == "not a hash"  # nothing stored is harmed


def test_a_group_member_json_cannot_carry_is_named_and_nothing_is_written(
    redis_client, redis_server
):
    own = _own_app(redis_server.url, redis_server.url)
    job = durable_task(app=own, policy="fast", name="enqueue_test.grouped_json")(_identity)
    ids = [f"json-{n}-{time.time_ns()}" for n in range(3)]
    members = [job.s(value).set(task_id=job_id)
               for value, job_id in zip((1, object(), 3), ids, strict=True)]  # fmt: skip
    with pytest.raises(NotJSONSerializable, match="argument 0 is a object"):
        group(members).apply_async()
    assert redis_client.llen("celery") == 0
    assert all(runtime().store.get(job_id) is None for job_id in ids)


def test_a_group_the_broker_refuses_leaves_no_records(redis_client, redis_server):
    own = _own_app(redis_server.url, f"redis://127.0.0.1:{free_port()}/0")
    job = durable_task(app=own, policy="fast", name="enqueue_test.grouped_refused")(_identity)
    ids = [f"refused-{n}-{time.time_ns()}" for n in range(3)]
    with pytest.raises(Exception) as raised:
        group(job.s(n).set(task_id=job_id) for n, job_id in enumerate(ids)).apply_async()
    assert not isinstance(raised.value, EnqueueError)  # the broker's own error
    assert all(runtime().store.get(job_id) is None for job_id in ids)


def test_a_group_larger_than_one_pipeline_records_and_publishes_every_member(
    redis_client, redis_server
):
    from workers.core.store import PIPELINE_CALLS

    own = _own_app(redis_server.url, redis_server.url)
    job = durable_task(app=own, policy="fast", name="enqueue_test.big_group")(_identity)
    size = PIPELINE_CALLS + PIPELINE_CALLS // 2
    ids = [f"big-{n}-{time.time_ns()}" for n in range(size)]
    group(job.s(n).set(task_id=job_id) for n, job_id in enumerate(ids)).apply_async()
    assert redis_client.llen("celery") == size
    records = runtime().store.get_many(ids)
    assert [(fields or {}).get("state") for fields in records] == ["queued"] * size
    assert [(fields or {}).get("args") for fields in records[:3]] == ["[0]", "[1]", "[2]"]


# -- one Redis for the broker and the job state: the record and the first message
# -- in one script (workers/integration/record_push.py)


def test_one_redis_takes_the_first_message_with_its_record_in_one_script(
    redis_client, redis_server, start_worker
):
    jobs.add.delay(0, 0)  # connections and declarations, outside what is watched
    job_id = f"one-trip-{time.time_ns()}"
    seen = commands_during(redis_server, lambda: jobs.add.apply_async((2, 3), task_id=job_id))
    pushes = [(c["client_type"], c["command"].split()[1]) for c in seen
              if c["command"].startswith("LPUSH")]  # fmt: skip
    assert pushes == [("lua", "celery")], seen
    scripts = [i for i, c in enumerate(seen) if c["command"].startswith("EVALSHA")]
    assert len(scripts) == 1 and job_id in seen[scripts[0]]["command"], seen
    # The script's own commands follow its EVALSHA: the push and the record's writes.
    inside = [c["command"].split()[0] for c in seen[scripts[0] + 1:] if c["client_type"] == "lua"]
    assert "LPUSH" in inside and "HSET" in inside, inside
    start_worker("w1")
    wait_for(lambda: in_state(job_id, JobState.SUCCEEDED), 60, "the job to run")
    assert jobs.body_runs(redis_client, job_id) == {1: 1}


def test_a_state_redis_that_is_not_the_broker_gets_the_record_before_kombu_pushes(
    redis_client, redis_server
):
    """Another database of the same server: the record alone, then kombu's own push."""
    own = _own_app(redis_server.url, redis_server.url.rsplit("/", 1)[0] + "/1")
    job = durable_task(app=own, policy="fast", name="enqueue_test.two_databases")(_identity)
    job.delay(0)
    job_id = f"two-databases-{time.time_ns()}"
    seen = commands_during(redis_server, lambda: job.apply_async((1,), task_id=job_id))
    order = [(c["db"], c["client_type"], c["command"].split()[0]) for c in seen
             if c["command"].split()[0] in ("EVALSHA", "LPUSH")]  # fmt: skip
    assert order == [(0, "tcp", "EVALSHA"), (1, "tcp", "LPUSH")], seen
    assert redis_client.llen("celery") == 0
    assert runtime().store.get(job_id) is not None


def test_a_message_with_a_priority_lands_on_the_list_kombu_would_push_it_to(
    redis_client, redis_server
):
    own = _own_app(redis_server.url, redis_server.url)
    durable = durable_task(app=own, policy="fast", name="enqueue_test.prioritised")(_identity)
    plain = own.task(name="enqueue_test.plain_prioritised")(_identity)
    lists = lambda: {key: redis_client.llen(key) for key in redis_client.keys("celery*")}  # noqa: E731
    plain.apply_async((1,), priority=9)
    where_plain = lists()
    redis_client.delete(*where_plain)
    durable.apply_async((1,), priority=9)
    assert lists() == where_plain and len(where_plain) == 1, (lists(), where_plain)
    assert list(where_plain) != ["celery"], "priority 9 has a list of its own"


def test_one_redis_that_refuses_writes_takes_neither_record_nor_message(tmp_path):
    server = RedisServer(tmp_path / "full-redis", appendonly=False)
    server.start()
    try:
        client = server.client()
        own = _own_app(server.url, server.url)
        job = durable_task(app=own, policy="fast", name="enqueue_test.full_one")(_identity)
        job.delay(0)  # the queue's binding is declared while writes are taken
        before = {key: client.type(key) for key in client.keys("*")}
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1)  # below what an empty server uses
        with pytest.raises(EnqueueError, match=r"refuses writes \(out-of-memory\)"):
            job.apply_async((1,), task_id="refused-one-redis")
        client.config_set("maxmemory", 0)
        assert {key: client.type(key) for key in client.keys("*")} == before
        assert client.llen("celery") == 1, "only the message sent before"
    finally:
        server.kill()


def test_a_queue_list_redis_refuses_leaves_no_record(redis_client, redis_server):
    """The push goes first inside the script: a broker list Redis will not push onto
    (here a string, WRONGTYPE) refuses the enqueue, and no record is left to run later."""
    jobs.add.delay(0, 0)  # the queue's binding is declared
    redis_client.delete("celery")
    redis_client.set("celery", "not a list")
    job_id = f"wrong-list-{time.time_ns()}"
    with pytest.raises(EnqueueError, match="WRONGTYPE") as raised:
        jobs.add.apply_async((1, 2), task_id=job_id)
    assert "nothing was published" in str(raised.value)
    assert runtime().store.get(job_id) is None, "a refused job must not run later"
    assert redis_client.get("celery") == "not a list"  # nothing stored is harmed


def test_a_record_that_waits_for_replicas_goes_before_its_message(redis_client, redis_server):
    """With DURABLE_REDIS_MIN_REPLICAS the record must be on the replicas before the
    message goes out: a Redis without them refuses the enqueue, and nothing is pushed."""
    own = Celery("enqueue-test-replicas", set_as_current=False)
    own.conf.update(broker_url=redis_server.url, task_publish_retry=False)
    settings = load_settings().model_copy(update={
        "redis_url": redis_server.url, "redis_min_replicas": 1,
        "redis_min_replicas_timeout": 0.1,
    })  # fmt: skip
    install(own, settings=settings)
    job = durable_task(app=own, policy="fast", name="enqueue_test.replicated")(_identity)
    with pytest.raises(EnqueueError, match="NOREPLICAS"):
        job.delay(1)
    assert redis_client.llen("celery") == 0, "the message went out before the replicas had it"
