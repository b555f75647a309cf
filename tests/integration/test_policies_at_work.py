"""Policy features that need real workers: parking, retry queues, retention."""

from __future__ import annotations

import pytest

from tests import jobs
from tests.conftest import wait_for
from tests.support.ops import control, runtime
from tests.support.records import state_of
from workers import JobState

pytestmark = pytest.mark.integration



def test_max_retrying_parks_new_failures_and_unparks_them_as_room_frees(
    redis_client, start_worker
):
    """Policy `capped` lets one job wait for a retry; the others park, then all finish."""
    ids = [jobs.capped_fails.delay(2).id for _ in range(3)]
    start_worker(concurrency=1)
    wait_for(
        lambda: any(state_of(i) is JobState.PARKED for i in ids), 30, "a job to be parked"
    )
    for job_id in ids:
        wait_for(lambda job_id=job_id: state_of(job_id) is JobState.SUCCEEDED, 60, "all to succeed")
        assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1, 3: 1}
    assert runtime().store.retrying_counts().get("capped", 0) == 0
    assert redis_client.zcard(runtime().store.keys.parked) == 0


def test_retries_go_to_the_policy_retry_queue(redis_client, start_worker):
    """A flood of retries never starves fresh work: they wait on their own queue."""
    start_worker("fresh", queues="celery")
    job_id = jobs.retried_on_own_queue.delay().id
    wait_for(lambda: redis_client.llen("retries") == 1, 30, "the retry on the 'retries' queue")
    assert state_of(job_id) is JobState.RETRYING
    start_worker("retrier", queues="retries")
    wait_for(lambda: state_of(job_id) is JobState.SUCCEEDED, 30, "the retry queue's worker")
    assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1}


def test_ended_records_expire_after_retention_and_leave_no_index_entry(
    redis_client, start_worker
):
    short = {"DURABLE_RETENTION": "1", "DURABLE_SUCCEEDED_RETENTION": "1"}
    start_worker(env=short)
    done = jobs.flaky.delay(1).id
    dead = jobs.permanent.delay().id
    wait_for(lambda: state_of(done) is JobState.SUCCEEDED, 30, "the success")
    wait_for(lambda: state_of(dead) is JobState.DEAD, 30, "the give-up")
    keys = runtime().store.keys
    wait_for(lambda: control.status(done) is None and control.status(dead) is None,
             30, "the records to expire")  # fmt: skip
    wait_for(
        lambda: redis_client.zcard(keys.ended(JobState.SUCCEEDED)) == 0
        and redis_client.zcard(keys.ended(JobState.DEAD)) == 0,
        60,
        "the sweeper to trim the index entries",
    )
    assert redis_client.zcard(keys.due) == 0 and redis_client.zcard(keys.leases) == 0
