"""A job's retry chain in real workers: attempts, give-up, fencing, checkpoints."""

from __future__ import annotations

import uuid

import pytest

from tests import jobs
from tests.conftest import wait_for
from tests.support.ops import control
from tests.support.records import in_state, state_of
from workers import JobState

pytestmark = pytest.mark.integration



def test_job_failing_three_times_then_succeeding_ends_succeeded_with_four_attempts(
    redis_client, start_worker
):
    start_worker()
    job_id = jobs.flaky.delay(3).id

    wait_for(lambda: state_of(job_id) is JobState.SUCCEEDED, 30, "the job to succeed")
    record = control.status(job_id)
    assert record is not None
    assert record.attempts == 4
    assert record.failures == {"error": 3}
    assert record.first_failure_at is not None
    assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1, 3: 1, 4: 1}


def test_unbounded_policy_keeps_retrying_past_a_finite_window(redis_client, start_worker):
    """fails_in_window (2 s window) gives up; always_fails (duration off) goes on past it."""
    start_worker()
    bounded = jobs.fails_in_window.delay().id
    unbounded = jobs.always_fails.delay().id

    wait_for(lambda: state_of(bounded) is JobState.DEAD, 30, "the 2s-window job to give up")
    dead = control.status(bounded)
    assert dead is not None and dead.reason is not None
    assert "window" in dead.reason

    # The unbounded job is still retrying well after its first failure + 2 s.
    wait_for(
        lambda: (r := control.status(unbounded)) is not None
        and r.first_failure_at is not None
        and r.last_failure_at is not None
        and (r.last_failure_at - r.first_failure_at).total_seconds() > 4,
        30,
        "the unbounded job to fail for longer than the finite window",
    )
    assert state_of(unbounded) in (JobState.RETRYING, JobState.QUEUED, JobState.RUNNING)


def test_permanent_error_gives_up_at_once_whatever_the_policy(redis_client, start_worker):
    start_worker()
    job_id = jobs.permanent.delay().id
    wait_for(lambda: state_of(job_id) is JobState.DEAD, 30, "the job to be dead")
    record = control.status(job_id)
    assert record is not None and record.attempts == 1
    assert record.reason is not None and "Permanent" in record.reason


def test_no_capacity_is_its_own_event(redis_client, start_worker):
    start_worker()
    job_id = jobs.waits_for_capacity.delay(2).id
    wait_for(lambda: state_of(job_id) is JobState.SUCCEEDED, 30, "the job to succeed")
    record = control.status(job_id)
    assert record is not None
    assert record.failures == {"no-capacity": 2}


def test_same_message_delivered_twice_runs_the_body_once(redis_client, start_worker):
    """An application enqueueing the same id twice (or a redelivery) is dropped by claim."""
    job_id = str(uuid.uuid4())
    jobs.add.apply_async((1, 2), task_id=job_id)
    jobs.add.apply_async((1, 2), task_id=job_id)
    worker = start_worker()
    wait_for(lambda: state_of(job_id) is JobState.SUCCEEDED, 30, "the job to succeed")
    wait_for(lambda: "dropped" in worker.log_text(), 30, "the second delivery to be dropped")
    assert jobs.body_runs(redis_client, job_id) == {1: 1}


def test_checkpoint_is_read_by_the_next_attempt_and_resets_the_streak(
    redis_client, start_worker
):
    start_worker()
    job_id = jobs.checkpointer.delay(3).id
    wait_for(lambda: state_of(job_id) is JobState.SUCCEEDED, 30, "the job to succeed")
    record = control.status(job_id)
    assert record is not None and record.attempts == 3
    assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1, 3: 1}


def test_failure_after_a_checkpoint_gets_a_fresh_event_window(redis_client, start_worker):
    """Progress starts a new streak, per-event windows included: the failure that
    follows a checkpoint in the same attempt is judged by the new streak, not by
    the error window that began at attempt 1 (4.5 s, long past by then)."""
    start_worker()
    job_id = jobs.progress_then_fail.delay(4, 5.0).id
    wait_for(lambda: in_state(job_id, JobState.SUCCEEDED, JobState.DEAD), 60, "the job to end")
    record = control.status(job_id)
    assert record is not None
    assert record.state is JobState.SUCCEEDED, record.reason
    assert record.attempts == 5
    assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}


def test_threads_pool_keeps_each_attempt_apart(redis_client, start_worker):
    """One task instance serves every thread: each thread must see its own attempt."""
    start_worker(pool="threads", concurrency=4)
    ids = [jobs.checkpointer.delay(3).id for _ in range(8)]
    for job_id in ids:
        wait_for(lambda job_id=job_id: in_state(job_id, JobState.SUCCEEDED), 60, "jobs to succeed")
        assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1, 3: 1}
        record = control.status(job_id)
        assert record is not None and record.attempts == 3
