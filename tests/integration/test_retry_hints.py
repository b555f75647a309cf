"""A job's own delay hint, with real workers and Redis: it is the delay, above the
policy's backoff ceiling too, and only the window and max_attempts bound it.
Code migrated from Celery gives it with ``raise self.retry(exc=..., countdown=N)``.

Waits are checked as lower bounds on Redis' clock: the next body starts no
sooner than the failure time the fail script recorded plus the hint.
"""

from __future__ import annotations

import pytest

from tests import jobs
from tests.conftest import wait_for
from tests.support.ops import control, runtime
from tests.support.records import in_state, state_of
from workers import JobState

pytestmark = pytest.mark.integration


def _last_failure_ms(redis_client, job_id: str) -> int:
    return int(runtime().store.field(job_id, "last_failure_at") or 0)


def test_no_capacity_hint_wins_over_the_backoff_max(redis_client, start_worker):
    """NoCapacity(retry_after=3) under backoff max 2s comes back after 3 s, not 2 s."""
    start_worker()
    job_id = jobs.busy_once.delay(3).id
    wait_for(lambda: state_of(job_id) is JobState.SUCCEEDED, 30, "the job to succeed")
    assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1}
    retried_at = jobs.body_started_ms(redis_client, job_id, 2)
    assert retried_at is not None
    assert retried_at >= _last_failure_ms(redis_client, job_id) + 3000


def test_hint_past_the_window_gives_up_on_duration(redis_client, start_worker):
    """A 5 s hint in a 2 s window: dead after one attempt, naming the window's field."""
    start_worker()
    job_id = jobs.busy_past_the_window.delay(5).id
    record = wait_for(lambda: in_state(job_id, JobState.DEAD), 30, "the give-up")
    assert jobs.body_runs(redis_client, job_id) == {1: 1}
    assert record.reason is not None
    assert "(duration) ends before the job's retry_after of 5s" in record.reason
    assert control.status(job_id).attempts == 1


@pytest.mark.parametrize("how", ["countdown", "handling"])
def test_celery_retry_with_countdown_is_a_failure_of_its_exc_with_that_delay(
    redis_client, start_worker, how
):
    """self.retry(exc=ConnectionError(...), countdown=2) (or countdown=2 while handling
    it): the policy retries ConnectionError only, after 2 s (its backoff max is 0.2 s)."""
    start_worker()
    job_id = jobs.retries_like_celery.delay(how).id
    record = wait_for(lambda: in_state(job_id, JobState.SUCCEEDED, JobState.DEAD), 30,
                      "the job to end")  # fmt: skip
    assert record.state is JobState.SUCCEEDED, record.reason
    assert record.last_error == "ConnectionError: upstream refused"
    assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1}
    retried_at = jobs.body_started_ms(redis_client, job_id, 2)
    assert retried_at is not None
    assert retried_at >= _last_failure_ms(redis_client, job_id) + 2000


def test_celery_retry_with_eta_waits_until_the_eta(redis_client, start_worker):
    start_worker()
    job_id = jobs.retries_like_celery.delay("eta").id
    record = wait_for(lambda: in_state(job_id, JobState.SUCCEEDED, JobState.DEAD), 30,
                      "the job to end")  # fmt: skip
    assert record.state is JobState.SUCCEEDED, record.reason
    first, second = (jobs.body_started_ms(redis_client, job_id, n) for n in (1, 2))
    assert first is not None and second is not None
    # The eta was taken after the first body started: now + 2 s.
    assert second >= first + 2000


def test_celery_retry_with_max_retries_is_refused_with_the_reason(redis_client, start_worker):
    """The refusal is a TypeError in the body: the policy (three tries) judges it."""
    start_worker()
    job_id = jobs.retries_with_max_retries.delay().id
    record = wait_for(lambda: in_state(job_id, JobState.DEAD), 30, "the give-up")
    assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1, 3: 1}
    assert record.last_error is not None
    assert record.last_error.startswith("RetryOptionError: ")
    assert "self.retry(max_retries=5) is not accepted in a durable job" in record.last_error
    assert "the policy's max_attempts and duration decide when to stop" in record.last_error


def test_celery_retry_called_as_a_function_raises_its_exc(redis_client):
    """No worker, no attempt: self.retry(exc=...) raises exc, as Celery does."""
    with pytest.raises(ConnectionError, match="upstream refused"):
        jobs.retries_like_celery("countdown")
