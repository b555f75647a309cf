"""max_retry_rate: retries of a policy start no faster than its budget, fleet-wide,
and a retry held back by the budget waits without losing an attempt."""

from __future__ import annotations

import itertools
import json

import pytest
import redis

from tests import jobs
from tests.conftest import wait_for
from tests.integration.test_cli_jobs import make_job, run, run_json
from tests.support.ops import runtime
from tests.support.records import in_state
from workers import JobState, app, durable_of
from workers.core.store import Store
from workers.ops.cli.common import ExitCode

pytestmark = pytest.mark.integration

RATE = 10.0  # the budget-10 policy's max_retry_rate, a second
JOBS = 200


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return runtime().store


def retry_starts_ms(store: Store, job_id: str) -> list[int]:
    """When each retry (attempt >= 2) of the job started, from its own history."""
    entries = [json.loads(entry) for entry in store.history(job_id)]
    return [int(e["started_at"]) for e in entries if e["attempt"] >= 2]


def test_200_retries_at_once_on_2_workers_start_no_faster_than_the_budget_and_lose_no_attempt(
    store, redis_client, start_worker
):
    start_worker("w1")
    start_worker("w2")
    ids = [jobs.fails_once_budgeted.delay().id for _ in range(JOBS)]

    for job_id in ids:
        done = wait_for(lambda j=job_id: in_state(j, JobState.SUCCEEDED), 120,
                        "every job to succeed at its retry")  # fmt: skip
        # No attempt was lost to the budget: the count is the bodies' own.
        runs = jobs.body_runs(redis_client, job_id)
        assert runs == {1: 1, 2: 1}, (job_id, runs)
        assert done.attempts == sum(runs.values()) == 2

    starts = sorted(start for job_id in ids for start in retry_starts_ms(store, job_id))
    assert len(starts) == JOBS
    seconds = (starts[-1] - starts[0]) / 1000
    measured = (len(starts) - 1) / seconds
    print(f"retry starts: {len(starts)} over {seconds:.2f}s = {measured:.2f}/s (budget {RATE}/s)")
    # Loose for a shared 2-core machine: the budget spaces slots exactly, but a
    # sweeper publishes the slots that came due since its last pass together.
    assert measured <= RATE * 1.5 + 1


def test_a_job_held_by_the_budget_waits_as_retrying_without_an_attempt_and_says_so(store):
    job_id = make_job(store, JobState.RETRYING, policy="budget-10", delay_ms=0,
                      task="tests.jobs.fails_once_budgeted")  # fmt: skip
    before = store.get(job_id)
    slot = store.now_ms() + 60_000

    assert store.wait_for_budget(job_id, 2, slot) is None

    held = store.get(job_id)
    assert held["state"] == "retrying" and held["attempt"] == before["attempt"] == "1"
    assert held["held_by"] == "budget" and int(held["next_attempt_at"]) == slot
    assert store.index_score(store.keys.due, job_id) == slot
    shown = run_json("show", job_id)
    assert shown["job"]["held_by"] == "budget"
    assert any(line.startswith("held by: budget.") and "10/s fleet-wide" in line
               and "no attempt" in line for line in shown["why"])  # fmt: skip
    text = run("show", job_id)
    assert text.exit_code == ExitCode.OK and "held by: budget" in text.output
    listed = run("list", "--wide")
    assert "retrying, budget" in listed.output, listed.output
    # A delivery that is not the job's next attempt changes nothing.
    dropped = store.wait_for_budget(job_id, 3, slot + 1000)
    assert dropped is not None and dropped.why == "stale"
    assert store.index_score(store.keys.due, job_id) == slot


def test_the_sweeper_publishes_a_budget_held_job_at_its_slot_without_an_attempt(
    store, redis_client
):
    job_id = make_job(store, JobState.RETRYING, policy="budget-10", delay_ms=0,
                      task="tests.jobs.fails_once_budgeted")  # fmt: skip
    assert store.wait_for_budget(job_id, 2, store.now_ms()) is None
    redis_client.delete("celery")

    durable_of(app).sweeper(owner="budget-test").run_once()

    published = store.get(job_id)
    assert published["state"] == "queued" and published["attempt"] == "1"
    messages = [json.loads(m) for m in redis_client.lrange("celery", 0, -1)]
    mine = [m["headers"] for m in messages if m["headers"]["id"] == job_id]
    assert len(mine) == 1
    # The next attempt is still 2, and its slot is taken: it starts without asking again.
    assert mine[0]["durable_attempt"] == 2
    assert mine[0]["durable_budget"] == "taken"
    assert mine[0]["durable_event"] == "error"


def test_the_budget_hands_out_one_slot_per_interval_across_callers(store):
    interval = 100.0
    first = store.take_budget("spacing", interval)
    assert first is None  # an idle budget: the first retry starts now
    turns = [store.take_budget("spacing", interval) for _ in range(20)]
    slots = [turn[0] for turn in turns if turn is not None]
    assert len(slots) == 20
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert all(99 <= gap <= 101 for gap in gaps), gaps
    # An idle budget leaves no key behind for long.
    assert 0 < store.redis.pttl(store.keys.budget("spacing")) <= 2_100 + 1_000


def test_a_policy_without_a_budget_never_touches_one(store, redis_client, start_worker):
    start_worker("w1")
    job_id = jobs.flaky.delay(2).id
    wait_for(lambda: in_state(job_id, JobState.SUCCEEDED), 30, "the job to succeed")
    assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1, 3: 1}
    assert list(redis_client.scan_iter(store.keys.budget("*"))) == []
