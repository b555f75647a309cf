"""Worker crashes: whole-worker SIGKILL, pool-child SIGKILL, warm shutdown."""

from __future__ import annotations

import pytest

from tests import jobs
from tests.conftest import TEST_SETTINGS, wait_for
from tests.support.ops import control, runtime
from tests.support.records import in_state
from workers import JobState, app, durable_of
from workers.core.outcomes import Payload
from workers.core.publisher import NextAttempt

pytestmark = pytest.mark.integration

LEASE = float(TEST_SETTINGS["DURABLE_LEASE_SECONDS"])
SWEEP = float(TEST_SETTINGS["DURABLE_SWEEP_SECONDS"])


def test_sigkill_of_worker_holding_a_countdown_retry_runs_it_elsewhere_in_time(
    redis_client, start_worker
):
    first = start_worker("w1")
    job_id = jobs.fail_once_slowly.delay().id
    waiting = wait_for(lambda: in_state(job_id, JobState.RETRYING), 30, "attempt 1 to fail")
    assert waiting.next_attempt_at is not None and waiting.first_failure_at is not None
    # The 3 s countdown message now sits in w1's memory (and kombu's unacked hash).
    first.kill()
    start_worker("w2")

    done = wait_for(lambda: in_state(job_id, JobState.SUCCEEDED), 60, "attempt 2 elsewhere")
    assert done.attempts == 2
    assert done.first_failure_at == waiting.first_failure_at
    started_ms = jobs.body_started_ms(redis_client, job_id, 2)
    assert started_ms is not None
    noticed_ms = int(redis_client.get(runtime().store.keys.last_death) or 0)
    assert noticed_ms, "a sweeper should have noticed w1's death"
    # The bound (issue 13), on Redis' clock: once the death is noticed (a lease of
    # silence after the kill, counted by w2's sweeper when it is up), the held retry
    # runs within two sweeps of its due time, + 2 s for a shared machine.
    since = max(waiting.next_attempt_at.timestamp(), noticed_ms / 1000)
    late_by = started_ms / 1000 - since
    assert late_by <= 2 * SWEEP + 2, (
        f"attempt 2 started {late_by:.2f}s after it was due and the death was noticed"
    )
    assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1}


def test_a_live_workers_countdown_retry_is_left_to_its_worker(redis_client, start_worker):
    """No crash: the held retry's due entry waits at its safety time (ten leases after
    it is due) from the start, so no sweeper takes it, and the countdown delivery
    runs attempt 2 (issue 13: no sweeper script call per countdown retry)."""
    start_worker("w1")
    job_id = jobs.fail_once_slowly.delay().id
    waiting = wait_for(lambda: in_state(job_id, JobState.RETRYING), 30, "attempt 1 to fail")
    store = runtime().store
    fields = store.get(job_id)
    assert fields is not None and fields.get("held")
    score = redis_client.zscore(store.keys.due, job_id)
    assert score == int(fields["next_attempt_at"]) + runtime().held_safety_ms
    done = wait_for(lambda: in_state(job_id, JobState.SUCCEEDED), 30, "attempt 2")
    assert done.attempts == 2 and waiting.attempts == 1
    assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1}
    assert store.stats().get("recoveries:due", 0) == 0  # no sweeper published it


def test_sigkill_of_worker_while_the_body_runs_is_an_interruption(redis_client, start_worker):
    first = start_worker("w1")
    job_id = jobs.sleepy.delay(4).id
    wait_for(lambda: jobs.body_runs(redis_client, job_id).get(1), 30, "attempt 1 to start")
    first.kill()
    start_worker("w2")

    done = wait_for(lambda: in_state(job_id, JobState.SUCCEEDED), 60, "attempt 2 elsewhere")
    assert done.attempts == 2
    assert done.failures == {"interruption": 1}
    assert done.last_event == "interruption"
    assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1}


def test_job_that_kills_its_worker_every_time_stops_at_max_attempts(redis_client, start_worker):
    start_worker("w1")
    job_id = jobs.kills_its_worker.delay().id
    dead = wait_for(lambda: in_state(job_id, JobState.DEAD), 90, "the job to give up")
    assert dead.attempts == 3
    assert dead.failures == {"interruption": 3}
    assert dead.reason is not None and "max_attempts" in dead.reason
    assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1, 3: 1}


def test_pool_child_killed_mid_attempt_is_retried_as_interruption(redis_client, start_worker):
    """The main process ends the lease when billiard reports the lost child; when it
    does not (a child that dies before it acknowledged the job), the lease expires."""
    start_worker("w1")
    job_id = jobs.kills_once.delay().id
    done = wait_for(lambda: in_state(job_id, JobState.SUCCEEDED), 60, "attempt 2 to succeed")
    assert done.attempts == 2
    assert done.failures == {"interruption": 1}
    assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1}


def test_warm_shutdown_hands_countdown_retries_back_at_once(redis_client, start_worker):
    first = start_worker("w1")
    job_id = jobs.fail_once_slowly.delay().id
    wait_for(lambda: in_state(job_id, JobState.RETRYING), 30, "attempt 1 to fail")
    first.stop()  # SIGTERM: the held countdown message goes back to the queue
    queued = redis_client.llen("celery")
    assert queued == 1, "the countdown message should be back on the queue"
    start_worker("w2")
    done = wait_for(lambda: in_state(job_id, JobState.SUCCEEDED), 60, "attempt 2 to succeed")
    assert done.attempts == 2
    assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1}


def test_killed_job_never_runs_again_after_every_worker_restarts(redis_client, start_worker):
    first = start_worker("w1")
    job_id = jobs.fail_once_slowly.delay().id
    wait_for(lambda: in_state(job_id, JobState.RETRYING), 30, "attempt 1 to fail")
    result = control.kill(job_id, "test: stop it")
    assert result.outcome == "killed"
    # Every worker goes away; its in-memory revoke list with it. The held
    # countdown message goes back on the queue, unless the worker was slow
    # enough to reach its ETA first and drop it as revoked; a stale copy of
    # the same attempt, as a broker or an application may deliver, is sent too.
    first.stop()
    durable_of(app).publisher.publish(
        NextAttempt(job_id=job_id, task=jobs.fail_once_slowly.name, payload=Payload(),
                    attempt=2, queue=None, eta=None, policy="countdown-3s",
                    first_failure_at=None)
    )  # fmt: skip
    second = start_worker("w2")
    wait_for(lambda: "dropped: killed" in second.log_text(), 30, "the stale message to be dropped")
    record = control.status(job_id)
    assert record is not None and record.state is JobState.KILLED
    assert record.killed_reason == "test: stop it"
    assert jobs.body_runs(redis_client, job_id) == {1: 1}


def test_delay_longer_than_the_visibility_timeout_runs_exactly_once(redis_client, start_worker):
    """A 4 s retry with a 2 s visibility timeout: held in the due set, never as a message."""
    short = {"DURABLE_VISIBILITY_TIMEOUT": "2", "DURABLE_MAX_COUNTDOWN": "1"}
    start_worker("w1", env=short)
    job_id = jobs.fail_once_long.delay().id
    done = wait_for(lambda: in_state(job_id, JobState.SUCCEEDED), 60, "attempt 2 to succeed")
    assert done.attempts == 2
    assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1}


def test_countdown_retry_behind_a_busy_live_worker_is_not_published_twice(
    redis_client, start_worker
):
    """Overdue only because the worker is busy: no worker died, so no sweeper copy."""
    worker = start_worker("w1", concurrency=1)
    job_id = jobs.fail_once_slowly.delay().id
    wait_for(lambda: in_state(job_id, JobState.RETRYING), 30, "attempt 1 to fail")
    jobs.sleepy.delay(3 * LEASE)  # the only pool child is busy past due + a lease
    done = wait_for(lambda: in_state(job_id, JobState.SUCCEEDED), 60, "attempt 2 to run")
    assert done.attempts == 2
    assert f"job {job_id} task=tests.jobs.fail_once_slowly attempt=2 published by the sweeper" \
        not in worker.log_text()
    assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1}
