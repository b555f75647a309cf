"""Bad input: each gets a clear error, and nothing already stored is harmed.

Policy files (hand-written and hypothesis-generated cases) are in
tests/unit/test_policy_errors.py; a job argument JSON cannot carry is in
tests/integration/test_enqueue.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest
import redis
from click.testing import CliRunner
from kombu import Connection, Exchange, Producer

from tests import jobs
from tests.conftest import wait_for
from tests.support.cli import run_retryctl
from tests.support.ops import control, runtime
from tests.support.worker_process import ROOT
from workers import JobState, app
from workers.core.failures import MAX_ERROR_CHARS
from workers.integration.publish import attempt_from_header
from workers.ops.cli import cli
from workers.ops.control import InvalidJobId
from workers.ops.embedded_redis import free_port

pytestmark = pytest.mark.integration

HOSTILE_IDS = [
    "",
    " ",
    "*",
    "durable:*",
    "a b",
    "../../etc/passwd",
    "id\nwith-newline",
    "id\x00nul",
    "'; FLUSHALL; '",
    "$(rm -rf /)",
    "-rf",
    "x" * 201,
    "ünïcode",
    "\x1b[31mred",
]


def _succeeded(job_id: str) -> JobState | None:
    record = control.status(job_id)
    return record.state if record and record.state is JobState.SUCCEEDED else None


def _publish_raw(body: object, headers: dict | None = None, serializer: str = "json") -> None:
    with Connection(runtime().settings.redis_url) as conn:
        Producer(conn).publish(
            body, exchange=Exchange("celery", type="direct"), routing_key="celery",
            serializer=serializer, headers=headers or {},
        )  # fmt: skip


def test_garbage_messages_are_refused_and_logged_and_the_worker_stays_up(
    redis_client, start_worker
):
    worker = start_worker("w1")
    bad_header = str(uuid.uuid4())
    app.send_task("tests.jobs.add", args=[1, 2], task_id=bad_header,
                  headers={"durable_attempt": "garbage"})  # fmt: skip
    negative = str(uuid.uuid4())
    app.send_task("tests.jobs.add", args=[1, 2], task_id=negative,
                  headers={"durable_attempt": -3})  # fmt: skip
    _publish_raw({"hello": "world"})  # no task headers at all
    _publish_raw("just a string")
    # Not even kombu envelopes: pushed onto the queue list by something else.
    redis_client.lpush("celery", "this is not JSON {", "[1, 2]", '{"a": 1}', "7")
    with redis.Redis.from_url(runtime().settings.redis_url) as raw:
        raw.lpush("celery", b"\xff\xfe not UTF-8")
    good = jobs.add.delay(2, 3).id

    wait_for(lambda: _succeeded(good), 30, "a good job after the garbage to run")
    log = worker.log_text()
    assert f"job {bad_header} task=tests.jobs.add message refused" in log
    assert f"job {negative} task=tests.jobs.add message refused" in log
    assert "unknown message" in log.lower() or "unknown_message" in log.lower()
    for job_id in (bad_header, negative):
        assert control.status(job_id) is None
        assert jobs.body_runs(redis_client, job_id) == {}
    assert worker.process is not None and worker.process.poll() is None
    assert "Unrecoverable error" not in log
    assert log.count("dropped an unreadable message from the broker queue") == 5


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 1), (1, 1), (7, 7), ("3", 3), ("garbage", None), ("", None), (0, None),
     (-1, None), (True, None), (2.5, None), ("²", None), ([1], None)],
)  # fmt: skip
def test_attempt_header_values(value, expected):
    assert attempt_from_header(value) == expected


def test_huge_and_non_utf8_exception_messages_are_stored_safely(redis_client, inprocess_worker):
    huge = jobs.fails_with.delay("x", 1_000_000).id
    undecodable = jobs.fails_with_bytes.delay().id
    for job_id in (huge, undecodable):
        wait_for(lambda j=job_id: _succeeded(j), 30, "the job to succeed after one failure")
    huge_error = control.status(huge).last_error
    assert huge_error is not None and len(huge_error) <= MAX_ERROR_CHARS
    assert huge_error.startswith("ValueError: xxx") and huge_error.endswith("...(truncated)")
    bytes_error = control.status(undecodable).last_error
    assert bytes_error is not None and bytes_error.startswith("OSError: device said ")
    bytes_error.encode("utf-8")  # valid UTF-8: what JSON, the CLI and Flower need


def test_oversized_checkpoint_is_an_error_naming_the_setting(redis_client, inprocess_worker):
    job_id = jobs.checkpoints_too_much.delay(200_000).id

    def failed_once():
        record = control.status(job_id)
        return record if record is not None and record.last_error else None

    record = wait_for(failed_once, 30, "the attempt to fail")
    assert record.last_event == "error"
    assert "CheckpointTooLarge" in record.last_error
    assert "DURABLE_CHECKPOINT_MAX_BYTES=65536" in record.last_error
    assert not record.has_checkpoint  # nothing half-written
    control.kill(job_id, "test over")


def test_hostile_job_ids_are_refused_before_redis_is_touched(redis_client):
    existing = jobs.add.delay(1, 1).id  # never run: no worker; only the queue holds it
    before = sorted(redis_client.keys("*"))
    runner = CliRunner()
    for job_id in HOSTILE_IDS:
        with pytest.raises(InvalidJobId):
            control.kill(job_id)
        for command in (["show", job_id], ["kill", "--yes", job_id], ["resume", job_id],
                        ["retry-now", job_id]):  # fmt: skip
            result = runner.invoke(cli, command)
            assert result.exit_code == 2, (command, result.output)
            assert "is not a job id" in result.output or "Error" in result.output
    assert sorted(redis_client.keys("*")) == before
    assert redis_client.llen("celery") == 1 and existing


@pytest.mark.parametrize(
    ("url", "code", "says"),
    [
        ("http://user:hunter2@example.invalid/", 2, "expected a Redis URL"),
        ("not a url", 2, "expected a Redis URL"),
        (f"redis://:hunter2@127.0.0.1:{free_port()}/0", 3, "cannot reach Redis"),
    ],
    ids=["wrong-scheme", "not-a-url", "down"],
)
def test_a_wrong_or_down_redis_url_gets_a_clear_error_without_the_password(url, code, says):
    result = run_retryctl(url, "list")
    assert result.returncode == code, result.stderr
    assert says in result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_a_worker_with_a_wrong_redis_url_stops_with_a_clear_error(tmp_path, worker_env):
    env = {**worker_env, "DURABLE_REDIS_URL": "http://user:hunter2@example.invalid/"}
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tests.jobs", "worker", "-c", "1"],
        cwd=ROOT, env=env, text=True, capture_output=True, timeout=60,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "DURABLE_REDIS_URL" in output and "expected a Redis URL" in output
    assert "hunter2" not in output


def test_stored_state_is_unharmed_by_all_of_the_above(redis_client, inprocess_worker):
    """A job that ran before the garbage keeps its record; garbage adds no record."""
    job_id = jobs.flaky.delay(1).id
    wait_for(lambda: _succeeded(job_id), 30, "the job to succeed")
    record = runtime().store.get(job_id)
    _publish_raw({"hello": "world"})
    app.send_task("tests.jobs.add", args=[1, 2], task_id=job_id,
                  headers={"durable_attempt": "garbage"})  # fmt: skip
    app.send_task("tests.jobs.add", args=[1, 2], task_id=job_id)  # a stale duplicate
    time.sleep(1.5)
    assert runtime().store.get(job_id) == record
    assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1}
