"""Enqueueing durable jobs: what the application sees, with a real broker."""

from __future__ import annotations

import datetime
import socket
import uuid

import pytest
from celery import Celery
from kombu import Connection, Queue

from tests import jobs
from tests.conftest import wait_for
from tests.support.ops import control
from workers import JobState, TaskOptionError, durable_task
from workers.core.errors import NotJSONSerializable

pytestmark = pytest.mark.integration

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


class Unserializable:
    pass


def test_argument_json_cannot_carry_is_named_at_enqueue(redis_client):
    with pytest.raises(NotJSONSerializable, match="keyword argument 'y' is a Unserializable"):
        jobs.add.delay(1, y=Unserializable())
    assert redis_client.llen("celery") == 0


def test_datetime_arguments_survive_a_retry_published_by_the_sweeper(redis_client, start_worker):
    """kombu's JSON carries datetimes; the stored payload must carry them the same way."""
    start_worker()
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    job_id = jobs.echo_after_long_retry.delay(when).id
    wait_for(
        lambda: (r := control.status(job_id)) is not None and r.state is JobState.SUCCEEDED,
        60,
        "the job to succeed after a due-set retry",
    )
    assert redis_client.get(f"echo:{job_id}") == when.isoformat()


def test_unknown_and_conflicting_task_options_are_refused_at_declaration():
    typo = r"max_retires= is unknown \(did you mean max_retries\?"
    with pytest.raises(TaskOptionError, match=typo):
        durable_task(max_retires=3)
    with pytest.raises(TaskOptionError, match="max_retries= is not accepted"):
        durable_task(max_retries=3)


def test_unknown_policy_name_fails_at_declaration_with_the_known_names():
    from policies import UnknownPolicyError

    with pytest.raises(UnknownPolicyError, match="fast-forever"):
        durable_task(policy="forevr")


def test_two_workers_with_two_sweepers_never_run_one_attempt_twice(redis_client, start_worker):
    start_worker("w1")
    start_worker("w2")
    ids = [jobs.flaky.delay(2).id for _ in range(60)]
    ids += [jobs.fail_once_long.delay().id for _ in range(10)]  # due-set retries: both sweep

    def all_done() -> bool:
        return all(
            (r := control.status(i)) is not None and r.state is JobState.SUCCEEDED for i in ids
        )

    wait_for(all_done, 120, "every job to succeed")
    for job_id in ids:
        runs = jobs.body_runs(redis_client, job_id)
        assert set(runs.values()) == {1}, f"{job_id} ran an attempt twice: {runs}"


def _rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _rabbitmq_answers(), reason="no RabbitMQ answers on 127.0.0.1:5672")
def test_rabbitmq_broker_with_redis_state_end_to_end(redis_client, start_worker):
    queue = f"durable-test-{uuid.uuid4().hex[:12]}"
    start_worker("rabbit", env={"DURABLE_BROKER_URL": RABBITMQ_URL}, queues=queue)
    client = Celery(broker=RABBITMQ_URL)
    client.conf.task_serializer = "json"
    job_id = str(uuid.uuid4())
    try:
        client.send_task("tests.jobs.flaky", args=[2], task_id=job_id, queue=queue)
        wait_for(
            lambda: (r := control.status(job_id)) is not None and r.state is JobState.SUCCEEDED,
            60,
            "the job to succeed through RabbitMQ",
        )
        # The worker consumes only this queue: retries went back to the job's own queue.
        record = control.status(job_id)
        assert record is not None and record.attempts == 3
        assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1, 3: 1}
    finally:
        with Connection(RABBITMQ_URL) as conn:
            Queue(queue).bind(conn.default_channel).delete()
