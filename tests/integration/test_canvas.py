"""A durable job is a Celery task in every way a project uses one: canvas, results
and per-call options survive every path a retry can take.

The project is tests/canvas_jobs.py: its own app, its broker on another Redis
database than the job state, ``task_routes`` to its own queue, a result backend.
Each durable step fails before it succeeds; Celery's own t/integration/test_canvas.py
cases (chain, group, chord with a retrying header, link, link_error) are run
with such steps.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from celery import chain, chord, group

from tests import canvas_jobs as cj
from tests import jobs
from tests.conftest import wait_for
from tests.support.records import in_state
from workers import JobState, durable_of
from workers.ops.control import Control

RESULT_TIMEOUT = 60
OPTIONS = {
    "headers": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "tenant": "globex"},
    "priority": 5,
    "time_limit": 40,
    "soft_time_limit": 30,
}  # fmt: skip


def _control() -> Control:
    return Control.of_runtime(durable_of(cj.app).runtime)


def _status(job_id: str) -> Any:
    return _control().status(job_id)


@pytest.fixture
def canvas_worker(start_worker: Any) -> Any:
    def start(name: str = "c1", **options: Any) -> Any:
        return start_worker(name, module="tests.canvas_jobs", queues="canvas", **options)

    return start


def _assert_same_message(job_id: str, attempts: int) -> None:
    """Every attempt saw what the first one's message carried."""
    rows = cj.seen(job_id)
    assert sorted(rows) == list(range(1, attempts + 1)), rows
    first = rows[1]
    assert first["traceparent"] == OPTIONS["headers"]["traceparent"]
    assert first["tenant"] == "globex"
    assert first["priority"] == 5
    assert first["timelimit"] == [40, 30]
    assert first["routing_key"] == "canvas"
    for attempt, row in rows.items():
        assert row == first, f"attempt {attempt} saw {row}, attempt 1 saw {first}"


def test_per_call_options_survive_countdown_retries(redis_client, canvas_worker):
    canvas_worker()
    result = cj.step.apply_async((1, 2), **OPTIONS)
    assert result.get(timeout=RESULT_TIMEOUT) == 2
    _assert_same_message(result.id, 3)
    assert jobs.body_runs(redis_client, result.id) == {1: 1, 2: 1, 3: 1}


def test_per_call_options_survive_retries_held_in_redis(redis_client, canvas_worker):
    canvas_worker()
    result = cj.slow_step.apply_async((1, 1), **OPTIONS)
    wait_for(lambda: in_state_of(result.id, JobState.RETRYING), 30, "attempt 1 to fail")
    # The result backend says what Celery's would (stored just after the record).
    wait_for(lambda: result.state == "RETRY", 10, "the RETRY result")
    assert result.get(timeout=RESULT_TIMEOUT) == 2
    _assert_same_message(result.id, 2)


def test_per_call_options_survive_the_sweeper_after_a_worker_death(redis_client, canvas_worker):
    first = canvas_worker("c1")
    result = cj.held_step.apply_async((1, 1), **OPTIONS)
    wait_for(lambda: in_state_of(result.id, JobState.RETRYING), 30, "attempt 1 to fail")
    first.kill()  # the countdown retry it held is gone with it
    canvas_worker("c2")
    assert result.get(timeout=RESULT_TIMEOUT) == 2
    _assert_same_message(result.id, len(cj.seen(result.id)))
    assert all(n == 1 for n in jobs.body_runs(redis_client, result.id).values())


def test_per_call_options_survive_resume_and_retry_now(redis_client, canvas_worker):
    canvas_worker()
    dead = cj.doomed.apply_async(**OPTIONS)
    wait_for(lambda: in_state_of(dead.id, JobState.DEAD), 60, "the doomed job to die")
    assert _control().resume(dead.id).done
    wait_for(lambda: len(cj.seen(dead.id)) >= 4, 30, "the resumed attempt to run")
    _assert_same_message(dead.id, len(cj.seen(dead.id)))

    waiting = cj.slow_step.apply_async((5, 1), **OPTIONS)
    wait_for(lambda: in_state_of(waiting.id, JobState.RETRYING), 30, "attempt 1 to fail")
    assert _control().retry_now(waiting.id).done
    assert waiting.get(timeout=RESULT_TIMEOUT) == 6
    _assert_same_message(waiting.id, 2)


def in_state_of(job_id: str, state: JobState) -> Any:
    record = _status(job_id)
    return record if record is not None and record.state is state else None


def test_chain_goes_on_after_retries_on_every_path(redis_client, canvas_worker):
    canvas_worker()
    countdown = chain(cj.step.s(1, 2), cj.times_ten.s()).apply_async()
    held = chain(cj.slow_step.s(2, 1), cj.step.s(1), cj.times_ten.s()).apply_async()
    assert countdown.get(timeout=RESULT_TIMEOUT) == 20
    assert held.get(timeout=RESULT_TIMEOUT) == 40


def test_group_and_chord_with_retrying_headers(redis_client, canvas_worker):
    canvas_worker(concurrency=3)
    grouped = group(cj.step.s(i, 1) for i in range(3)).apply_async()
    assert grouped.get(timeout=RESULT_TIMEOUT) == [1, 2, 3]
    body = chord([cj.step.s(10, 1), cj.slow_step.s(20, 1), cj.step.s(30, 0)], cj.collect.s())
    assert body.apply_async().get(timeout=RESULT_TIMEOUT) == [11, 21, 31]
    assert len(cj.plain_calls("collect")) == 1, "the chord body ran once"


def test_link_runs_after_retries_and_link_error_fires_once_when_dead(redis_client, canvas_worker):
    canvas_worker()
    linked = cj.step.apply_async((4, 1), link=cj.times_ten.s())
    assert linked.get(timeout=RESULT_TIMEOUT) == 5
    wait_for(lambda: "5" in cj.plain_calls("times_ten"), 30, "the link to run")

    doomed = cj.doomed.apply_async(link_error=cj.on_error.s())
    with pytest.raises(ValueError, match="doomed fails"):
        doomed.get(timeout=RESULT_TIMEOUT)
    wait_for(lambda: doomed.id in cj.plain_calls("errors"), 30, "link_error to fire")
    assert cj.plain_calls("errors").count(doomed.id) == 1
    assert sorted(cj.seen(doomed.id)) == [1, 2, 3], "link_error fired only at the end"


def test_a_job_the_sweeper_ends_dead_reports_failure_and_fires_link_error(
    redis_client, canvas_worker
):
    """No worker raises the last error of a job that kills its worker every time: the
    sweeper stores the FAILURE result and fires link_error, as the worker would."""
    canvas_worker()
    doomed = cj.kills_its_worker.apply_async(link_error=cj.on_error.s())
    wait_for(lambda: in_state_of(doomed.id, JobState.DEAD), 90, "the sweeper to end it")
    wait_for(lambda: doomed.state == "FAILURE", 30, "the FAILURE result")
    wait_for(lambda: doomed.id in cj.plain_calls("errors"), 30, "link_error to fire")
    assert cj.plain_calls("errors").count(doomed.id) == 1
    assert jobs.body_runs(redis_client, doomed.id) == {1: 1, 2: 1, 3: 1}


def test_nothing_of_the_project_goes_to_the_ready_made_app(redis_client, canvas_worker):
    """Every message of the project's jobs went to its own broker database."""
    canvas_worker()
    result = cj.step.apply_async((1, 1))
    assert result.get(timeout=RESULT_TIMEOUT) == 2
    assert redis_client.llen("celery") == 0 and redis_client.llen("canvas") == 0
    assert in_state(result.id, JobState.SUCCEEDED) is not None


def _stored_options(app: Any, job_id: str) -> dict[str, Any]:
    """The message options a queued or retrying job's record keeps (succeed drops them)."""
    record = durable_of(app).runtime.store.get(job_id) or {}
    assert record.get("state") == "queued", record
    return dict(json.loads(record.get("opts") or "{}"))


def test_a_plain_job_stores_no_message_options(redis_client, canvas_worker):
    """Celery writes reply_to (the caller's oid) and replaced_task_nesting 0 into every
    message; with a result backend that reads neither, the record keeps none of it."""
    plain = cj.step.apply_async((1, 1))
    # What the caller chose is kept, its own reply_to included.
    chosen = cj.step.apply_async((1, 0), reply_to="replies-of-billing", priority=3)
    assert _stored_options(cj.app, plain.id) == {}
    assert _stored_options(cj.app, chosen.id) == {"reply_to": "replies-of-billing", "priority": 3}
    canvas_worker()
    assert plain.get(timeout=RESULT_TIMEOUT) == 2
    wait_for(lambda: in_state_of(chosen.id, JobState.SUCCEEDED), 30, "the job to succeed")


def test_results_reach_the_caller_over_rpc_after_retries_on_every_path(redis_client, start_worker):
    """The rpc:// backend sends the result to the caller's reply_to queue: a retry a
    worker publishes (countdown) and one a sweeper publishes (held in Redis) carry it."""
    from tests import rpc_jobs

    countdown = rpc_jobs.step.apply_async((1, 2))
    held = rpc_jobs.slow_step.apply_async((5, 1))
    caller = str(rpc_jobs.app.thread_oid)
    for job_id in (countdown.id, held.id):
        assert _stored_options(rpc_jobs.app, job_id) == {"reply_to": caller}
    start_worker("r1", module="tests.rpc_jobs", queues="rpc")
    assert countdown.get(timeout=RESULT_TIMEOUT) == 2
    assert held.get(timeout=RESULT_TIMEOUT) == 6
    assert jobs.body_runs(redis_client, held.id) == {1: 1, 2: 1}
