"""retryctl pause / unpause: held jobs start no attempt, and are released gently."""

from __future__ import annotations

import random

import pytest
import redis

from policies import Event
from tests import jobs
from tests.conftest import wait_for
from tests.integration.test_cli_jobs import make_job, run, run_json
from tests.support.ops import runtime
from tests.support.records import in_state
from workers import JobState, app, durable_of
from workers.core.records import history_from_fields
from workers.core.store import Store
from workers.ops import pauses
from workers.ops.cli.common import ExitCode

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return runtime().store


def sweep() -> None:
    durable_of(app).sweeper(owner="pause-test").run_once()


def assert_held(store: Store, redis_client: redis.Redis, ids: list[str], timeout: float,
                what: str) -> None:  # fmt: skip
    """Every job waits deferred, at attempt 0, and no body of them ran."""
    wait_for(lambda: store.in_index(store.keys.deferred, ids) == set(ids), timeout, what)
    for job_id in ids:
        assert in_state(job_id, JobState.QUEUED).attempts == 0
        assert jobs.body_runs(redis_client, job_id) == {}


def assert_run_once(redis_client: redis.Redis, ids: list[str], timeout: float) -> None:
    for job_id in ids:
        done = wait_for(lambda j=job_id: in_state(j, JobState.SUCCEEDED), timeout, "the job to run")
        assert done.attempts == 1
        assert jobs.body_runs(redis_client, job_id) == {1: 1}


def test_a_paused_policy_defers_deliveries_without_an_attempt_until_unpause(
    store, redis_client, start_worker
):
    result = run("pause", "--policy", "fast", "--reason", "partner API down")
    assert result.exit_code == ExitCode.OK, result.output
    assert run_json("pause", "--list")["policy:fast"]["reason"] == "partner API down"
    start_worker("w1")  # a worker started after the pause: it is in Redis
    ids = [jobs.add.delay(i, 1).id for i in range(3)]

    assert_held(store, redis_client, ids, 30, "the deliveries to be deferred")

    result = run("unpause", "--policy", "fast", "--rate", "50/s")
    assert result.exit_code == ExitCode.OK, result.output
    assert "3 jobs released" in result.output

    assert_run_once(redis_client, ids, 30)
    assert run_json("pause", "--list") == {}


def test_a_sweeper_publishes_nothing_for_a_paused_task_and_its_window_skips_the_pause(store):
    job_id = make_job(store, JobState.RETRYING, task="tests.jobs.always_fails", delay_ms=0,
                      failures=2)  # fmt: skip
    before = store.get(job_id)
    assert pauses.pause(store, "task", "tests.jobs.always_fails", "test")

    sweep()

    held = store.get(job_id)
    assert held["state"] == "retrying" and held["attempt"] == before["attempt"]
    assert store.index_score(store.keys.due, job_id) is None
    assert store.index_score(store.keys.deferred, job_id) is not None
    paused_at = int(held["paused_at"])
    assert any("held back by a pause" in line for line in run_json("show", job_id)["why"])

    done = pauses.unpause(store, "task", "tests.jobs.always_fails", rate=1)

    assert (done.released, done.still_paused) == (1, 0)
    released = store.get(job_id)
    due = int(released["next_attempt_at"])
    assert store.index_score(store.keys.due, job_id) == due
    # The window and the event's window start later by exactly the time held.
    shift = due - paused_at
    assert shift > 0
    assert int(released["first_failure_at"]) == int(before["first_failure_at"]) + shift
    def event_window_start(fields: dict[str, str]) -> int:
        return round(history_from_fields(fields).event_started_at[Event.ERROR] * 1000)

    assert event_window_start(released) == event_window_start(before) + shift
    assert released["attempt"] == before["attempt"] and "paused_at" not in released


def test_unpause_releases_in_jittered_waves_at_the_rate_never_all_at_once(store):
    ids = [make_job(store, JobState.RETRYING, policy="fast-forever", delay_ms=0)
           for _ in range(30)]  # fmt: skip
    pauses.pause(store, "policy", "fast-forever", "test")
    sweep()
    assert store.in_index(store.keys.deferred, ids) == set(ids)

    done = pauses.unpause(store, "policy", "fast-forever", rate=10, rng=random.Random(7))

    assert done.released == 30 and done.seconds == pytest.approx(3.0)
    scores = sorted(store.index_score(store.keys.due, job_id) or 0 for job_id in ids)
    assert len(set(scores)) == 30
    # One job per 100 ms slot: 30 slots span at least 28 of them, at most 30.
    assert 2_800 <= scores[-1] - scores[0] <= 3_000
    assert sum(1 for s in scores if s - scores[0] < 1_000) <= 11


def test_a_job_held_by_two_pauses_waits_for_both(store):
    job_id = make_job(store, JobState.RETRYING, policy="fast-forever", delay_ms=0,
                      task="tests.jobs.always_fails")  # fmt: skip
    pauses.pause(store, "policy", "fast-forever", "test")
    pauses.pause(store, "task", "tests.jobs.always_fails", "test")
    sweep()

    first = pauses.unpause(store, "policy", "fast-forever")
    assert (first.released, first.still_paused) == (0, 1)
    assert store.index_score(store.keys.due, job_id) is None

    second = pauses.unpause(store, "task", "tests.jobs.always_fails")
    assert (second.released, second.still_paused) == (1, 0)


def test_pause_refuses_a_missing_or_double_target_and_a_bad_rate(store):
    assert run("pause").exit_code == ExitCode.USAGE
    assert run("pause", "--policy", "p", "--task", "t").exit_code == ExitCode.USAGE
    result = run("unpause", "--policy", "p", "--rate", "fast")
    assert result.exit_code == ExitCode.USAGE
    assert "10/s or 300/m" in result.output


def test_a_pause_survives_a_redis_restart_and_still_holds_jobs_until_unpause(
    store, redis_client, redis_server, start_worker
):
    assert redis_server.appendonly  # AOF on: what the pause's durability rests on
    start_worker("w1")
    assert run("pause", "--policy", "fast", "--reason", "partner down").exit_code == ExitCode.OK
    before = [jobs.add.delay(i, 1).id for i in range(3)]
    assert_held(store, redis_client, before, 30, "the deliveries to be deferred")

    redis_server.kill()  # SIGKILL: only what the AOF holds comes back
    redis_server.start()  # same port, same data directory

    assert run_json("pause", "--list")["policy:fast"]["reason"] == "partner down"
    after = [jobs.add.delay(i, 2).id for i in range(3)]
    ids = before + after
    assert_held(store, redis_client, ids, 60, "the jobs enqueued after the restart to wait too")

    result = run("unpause", "--policy", "fast", "--rate", "50/s")
    assert result.exit_code == ExitCode.OK, result.output
    assert_run_once(redis_client, ids, 60)
