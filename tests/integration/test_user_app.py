"""A project's own Celery app (tests/userapp): every attempt goes out on *its* broker.

The user app's broker is database 1 of the test Redis, the job state database
0, and its jobs are routed to queue ``userjobs``; its workers consume only
that queue of that database (``-Q userjobs``). A retry published anywhere else
(the ready-made app's broker, queue ``celery``) is never consumed, so the
job stays ``retrying`` and the test times out waiting for it.
"""

from __future__ import annotations

import json

import pytest
import redis

from tests.conftest import wait_for
from tests.support.bodyruns import body_runs
from tests.support.broker import held_by_a_worker
from tests.support.cli import run_retryctl
from tests.support.records import in_state
from tests.userapp import app as user_app
from tests.userapp import tasks
from tests.userapp.celery import BROKER_URL, QUEUE
from workers import JobState

pytestmark = pytest.mark.integration

USER_WORKER = {"module": "tests.userapp", "queues": QUEUE}


@pytest.fixture
def broker(redis_client: redis.Redis) -> redis.Redis:
    """The user app's broker database (emptied with the rest by ``redis_client``)."""
    client = redis.Redis.from_url(BROKER_URL, decode_responses=True)
    yield client
    client.close()


def _nothing_on_the_state_database(state: redis.Redis) -> None:
    """No broker ever wrote to the state database: no queue, no binding, no unacked."""
    leaked = [
        key for key in state.keys("*")
        if key.startswith(("_kombu", "unacked", "celery", QUEUE))
    ]  # fmt: skip
    assert leaked == []


def _succeeded(job_id: str, timeout: float, what: str):
    return wait_for(lambda: in_state(job_id, JobState.SUCCEEDED), timeout, what)


def test_every_declaration_form_retries_on_the_users_broker_and_queue(
    redis_client, broker, start_worker
):
    """durable_task(app=...), @app.task(base=DurableTask, policy=...) and
    shared_durable_task: each fails once and succeeds at attempt 2."""
    start_worker("w1", **USER_WORKER)
    names = [tasks.flaky_durable.name, tasks.flaky_app_task.name,
             "tests.userapp.tasks.flaky_shared"]  # fmt: skip
    ids = [user_app.tasks[name].delay(1).id for name in names]
    for name, job_id in zip(names, ids, strict=True):
        done = _succeeded(job_id, 60, f"{name} to succeed at attempt 2")
        assert done.attempts == 2
        assert done.policy == "fast"
        assert body_runs(redis_client, job_id) == {1: 1, 2: 1}
    assert broker.exists(f"_kombu.binding.{QUEUE}")
    _nothing_on_the_state_database(redis_client)


def test_retries_waiting_through_a_sigkill_finish_on_the_users_broker(
    redis_client, broker, start_worker
):
    """A long-delay retry (in the due set only) and a countdown retry (a message the
    killed worker held) are published by the next worker's sweeper on the user's
    broker, queue userjobs."""
    first = start_worker("w1", **USER_WORKER)
    long_id = tasks.fail_once_long.delay().id
    countdown_id = tasks.fail_once_countdown.delay().id
    for job_id in (long_id, countdown_id):
        wait_for(lambda job_id=job_id: in_state(job_id, JobState.RETRYING), 30,
                 f"attempt 1 of {job_id} to fail")  # fmt: skip
    wait_for(lambda: held_by_a_worker(broker, countdown_id, 2), 30,
             "w1 to hold the countdown retry's message")  # fmt: skip
    first.kill()  # the whole process group, while both retries wait
    second = start_worker("w2", **USER_WORKER)

    for job_id in (long_id, countdown_id):
        done = _succeeded(job_id, 60, f"attempt 2 of {job_id} on the new worker")
        assert done.attempts == 2
        assert body_runs(redis_client, job_id) == {1: 1, 2: 1}
    log = second.log_text()
    assert f"job {long_id} task={tasks.fail_once_long.name} attempt=2 published by the sweeper" \
        in log
    _nothing_on_the_state_database(redis_client)


def test_retry_now_and_resume_end_on_the_users_broker(
    redis_server, redis_client, broker, start_worker
):
    """retryctl needs no app for them: it writes Redis, and the worker's sweeper
    publishes through the app the job belongs to."""
    start_worker("w1", **USER_WORKER)
    waiting_id = tasks.held_for_an_hour.delay().id
    dead_id = tasks.held_three_tries.delay().id
    wait_for(lambda: in_state(waiting_id, JobState.RETRYING), 30, "attempt 1 to fail")
    wait_for(lambda: in_state(dead_id, JobState.DEAD), 30, "three attempts to fail")

    tasks.allow(waiting_id)
    result = run_retryctl(redis_server.url, "retry-now", waiting_id)
    assert result.returncode == 0, result.stderr
    done = _succeeded(waiting_id, 30, "the retry-now attempt")
    assert done.attempts == 2
    assert body_runs(redis_client, waiting_id) == {1: 1, 2: 1}

    tasks.allow(dead_id)
    result = run_retryctl(redis_server.url, "resume", dead_id)
    assert result.returncode == 0, result.stderr
    done = _succeeded(dead_id, 30, "the resumed attempt")
    assert done.attempts == 4
    assert body_runs(redis_client, dead_id) == {1: 1, 2: 1, 3: 1, 4: 1}
    _nothing_on_the_state_database(redis_client)


@pytest.mark.parametrize(
    ("conf", "named"),
    [
        ({"broker_transport_options": {"visibility_timeout": 2}},
         "broker_transport_options['visibility_timeout']=2"),
        ({"accept_content": ["json", "yaml"]}, "accept_content=['json', 'yaml']"),
        ({"task_serializer": "yaml"}, "task_serializer='yaml'"),
    ],
)  # fmt: skip
def test_a_conflicting_setting_stops_the_worker_naming_it_and_the_fix(
    redis_client, start_worker, conf, named
):
    worker = start_worker("w1", wait=False, env={"USERAPP_CONF_JSON": json.dumps(conf)},
                          **USER_WORKER)  # fmt: skip
    assert worker.process is not None
    code = worker.process.wait(60)
    log = worker.log_text()
    assert code != 0, log[-3000:]
    assert "durable-retry cannot run on Celery app 'userapp'" in log
    assert named in log
    assert " ready." not in log


def test_kill_with_the_jobs_app_revokes_the_running_attempt_on_the_users_broker(
    redis_server, redis_client, broker, start_worker
):
    """The one retryctl command that broadcasts: ``kill -A MODULE`` sends the revoke
    on that app's broker, where the user's workers listen for it."""
    worker = start_worker("w1", **USER_WORKER)
    job_id = tasks.sleeper.delay(60).id
    wait_for(lambda: body_runs(redis_client, job_id).get(1), 30, "the attempt to start")
    result = run_retryctl(redis_server.url, "kill", "-A", "tests.userapp", job_id)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    wait_for(lambda: f"Terminating {job_id}" in worker.log_text(), 30,
             "the worker to terminate the running attempt")  # fmt: skip
    record = in_state(job_id, JobState.KILLED)
    assert record is not None
    assert body_runs(redis_client, job_id) == {1: 1}


def test_kill_with_an_app_that_cannot_be_loaded_changes_nothing(redis_server, redis_client):
    result = run_retryctl(redis_server.url, "kill", "-A", "tests.no_such_app", "some-job")
    assert result.returncode == 2
    assert "-A tests.no_such_app: cannot load a Celery app" in result.stderr
