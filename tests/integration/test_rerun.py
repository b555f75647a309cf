"""Transitions run again after their reply was lost (redis-py or the caller
retries on a connection error, a failover, a refusal): each answers as its
first run did, so nothing is recorded twice and no countdown goes unpublished.

Store-level, on the session's real Redis; claim and succeed run again are in
test_sentinel.py (through a failover).
"""

from __future__ import annotations

import uuid

import pytest
import redis

from tests.support.ops import runtime
from workers.core.outcomes import Claimed, FailKind, Payload
from workers.core.store import Store

pytestmark = pytest.mark.integration

OWNER = "host:1"


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return runtime().store


def _running(store: Store, token: str) -> str:
    job_id = str(uuid.uuid4())
    claimed = store.claim(job_id, 1, task="t", policy="default", owner=OWNER, lease_ms=60_000,
                          payload=Payload('["a"]', '{"k": 1}', "jobs"), token=token)  # fmt: skip
    assert isinstance(claimed, Claimed)
    return job_id


def _fail(store: Store, job_id: str, token: str, *, give_up: bool = False, grace: int = 3000):
    return store.fail(job_id, 1, OWNER, event="error", error="E: x", reason="r",
                      give_up=give_up, delay_ms=2000, sweeper_grace_ms=grace,
                      retention_ms=60_000, token=token)  # fmt: skip


def test_a_countdown_retry_recorded_twice_is_published_by_the_second_answer(store):
    job_id = _running(store, "tok1")
    first = _fail(store, job_id, "tok1")
    again = _fail(store, job_id, "tok1")
    assert first.kind is again.kind is FailKind.RETRY
    assert again.due_ms == first.due_ms
    assert again.payload == first.payload == Payload('["a"]', '{"k": 1}', "jobs", "")
    record = store.get(job_id)
    assert record is not None
    assert record["failures:error"] == "1"  # recorded once
    assert store.redis.hget(store.keys.stats, "failures:error") is not None
    assert len(store.history(job_id)) == 1


def test_a_give_up_recorded_twice_answers_dead_again(store):
    job_id = _running(store, "tok2")
    assert _fail(store, job_id, "tok2", give_up=True).kind is FailKind.DEAD
    assert _fail(store, job_id, "tok2", give_up=True).kind is FailKind.DEAD
    assert store.get(job_id)["failures:error"] == "1"  # type: ignore[index]


def test_another_delivery_or_a_late_worker_after_a_takeover_stays_stale(store):
    job_id = _running(store, "tok3")
    assert _fail(store, job_id, "tok3").kind is FailKind.RETRY
    assert _fail(store, job_id, "other").kind is FailKind.STALE
    assert _fail(store, job_id, "").kind is FailKind.STALE

    taken = _running(store, "tok4")
    store.redis.zadd(store.keys.leases, {taken: 0})  # its lease ran out
    assert store.take_lease(taken, "sweeper:9", 60_000) is not None
    # The sweeper records the interruption; the worker's late fail is not a rerun.
    assert store.fail(taken, 1, "sweeper:9", event="interruption", error="lost",
                      reason="r", give_up=False, delay_ms=2000,
                      retention_ms=60_000).kind is FailKind.RETRY  # fmt: skip
    assert _fail(store, taken, "tok4").kind is FailKind.STALE


def test_releasing_a_hold_brings_the_retry_back_to_its_due_time(store):
    """A countdown retry the broker would not take (recorder.py): the hold goes and
    its due entry moves from the safety time back to the due time, so a sweeper
    publishes it when due; a job no longer in the due set stays out of it."""
    job_id = _running(store, "tok5")
    failed = _fail(store, job_id, "tok5", grace=runtime().held_safety_ms)
    assert store.redis.zscore(store.keys.due, job_id) == failed.due_ms + runtime().held_safety_ms
    store.release_hold(job_id)
    record = store.get(job_id)
    assert record is not None and "held" not in record
    assert store.redis.zscore(store.keys.due, job_id) == failed.due_ms == int(
        record["next_attempt_at"]
    )
    gone = _running(store, "tok6")  # running: no due entry
    store.release_hold(gone)
    assert store.redis.zscore(store.keys.due, gone) is None
