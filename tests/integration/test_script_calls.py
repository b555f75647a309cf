"""The attempt's scripts read each record once: what Redis runs inside claim,
succeed and fail, on the paths every job takes.

Each ``redis.call`` inside a script costs Redis about as much as four names or
values it moves in or out of Lua (``python -m bench.script_cost`` counts them;
bench/FINDINGS.md, 2026-12-07), so the paths every job takes read the job's
hash once and write it once or twice. These tests watch a real Redis run
the store's real scripts (MONITOR) and hold them to that: a change that reads
the record again, or touches a key the job never entered, fails here before it
shows in the bench.
"""

from __future__ import annotations

import uuid

import pytest

from tests.integration.test_cli_jobs import OWNER, RETENTION_MS
from tests.support.monitor import script_calls
from tests.support.ops import runtime
from workers import JobState
from workers.core.outcomes import Payload
from workers.core.store import Claimed, Store

pytestmark = pytest.mark.integration

# The commands that read a hash without writing it.
READS = {"HGET", "HMGET", "HEXISTS", "HKEYS", "HGETALL"}


@pytest.fixture
def store(redis_client) -> Store:
    return runtime().store


def _enqueued(store: Store) -> str:
    job_id = f"calls-{uuid.uuid4()}"
    store.enqueue(job_id, task="t", policy="fast-forever", payload=Payload('["a"]', "{}", "q"))
    return job_id


def _claim(store: Store, job_id: str, attempt: int) -> Claimed:
    claimed = store.claim(job_id, attempt, task="t", policy="fast-forever", owner=OWNER,
                          lease_ms=60_000, token=f"token-{attempt}")  # fmt: skip
    assert isinstance(claimed, Claimed), claimed
    return claimed


def _only(redis_server, action) -> list[list[str]]:
    (calls,) = script_calls(redis_server, action)
    return calls


def _on(calls: list[list[str]], key: str) -> list[str]:
    """The commands of ``calls`` on ``key``, in order."""
    return [words[0] for words in calls if len(words) > 1 and words[1] == key]


def _reads_of(calls: list[list[str]], key: str) -> list[str]:
    return [command for command in _on(calls, key) if command in READS]


def _names(calls: list[list[str]]) -> list[str]:
    return [words[0] for words in calls]


def test_a_first_attempt_is_claimed_and_succeeds_with_one_read_of_its_record_each(
    store, redis_server
):
    job_id = _enqueued(store)
    job_key = store.layout.of(job_id).job(job_id)

    claim = _only(redis_server, lambda: _claim(store, job_id, 1))
    # One read, which the delivery is judged by and the claim answers with.
    assert _reads_of(claim, job_key) == ["HGETALL"], claim
    # Nothing is paused: one length read says so. A first attempt waits in no
    # retrying count and left no wait's fields behind to delete.
    assert _on(claim, store.keys.pauses) == ["HLEN"], claim
    assert _on(claim, store.keys.retrying) == [], claim
    assert "HDEL" not in _names(claim), claim
    assert len(claim) <= 7, claim

    succeed = _only(redis_server, lambda: store.succeed(job_id, 1, OWNER, RETENTION_MS))
    assert _reads_of(succeed, job_key) == ["HMGET"], succeed
    # A job that never failed was never in the stuck index, and a short history is not trimmed.
    assert _on(succeed, store.keys.stuck) == [], succeed
    assert "LTRIM" not in _names(succeed), succeed
    assert len(succeed) <= 9, succeed
    assert store.get(job_id)["state"] == JobState.SUCCEEDED


def test_a_retry_is_recorded_with_one_read_and_one_write_of_its_record(store, redis_server):
    job_id = _enqueued(store)
    job_key = store.layout.of(job_id).job(job_id)
    _claim(store, job_id, 1)

    # A countdown the broker holds: the payload comes back in the same read.
    outcome = None

    def fail() -> None:
        nonlocal outcome
        outcome = store.fail(
            job_id, 1, OWNER, event="error", error="E", reason="r", give_up=False,
            delay_ms=1000, sweeper_grace_ms=50_000, retention_ms=RETENTION_MS, token="token-1",
        )  # fmt: skip

    calls = _only(redis_server, fail)
    assert outcome is not None and outcome.payload == Payload('["a"]', "{}", "q"), outcome
    assert _reads_of(calls, job_key) == ["HMGET"], calls
    assert [c for c in _on(calls, job_key) if c == "HSET"] == ["HSET"], calls
    # No max_retrying: the policy's waiting count is only added to, never read.
    assert _on(calls, store.keys.retrying) == ["HINCRBY"], calls
    assert len(calls) <= 12, calls
    record = store.get(job_id)
    assert record["state"] == JobState.RETRYING and "owner" not in record and "held" in record

    # The retry's claim takes it out of its policy's waiting count and deletes
    # what its wait left (the due time, the countdown hold) in one call.
    claimed = None

    def claim_retry() -> None:
        nonlocal claimed
        claimed = _claim(store, job_id, 2)

    claim = _only(redis_server, claim_retry)
    assert _reads_of(claim, job_key) == ["HGETALL"], claim
    assert _on(claim, store.keys.retrying) == ["HINCRBY"], claim
    assert [c for c in _names(claim) if c == "HDEL"] == ["HDEL"], claim
    record = store.get(job_id)
    assert "next_attempt_at" not in record and "held" not in record, record
    # The answer is the record after the claim, less what the attempt does not need.
    assert claimed is not None and claimed.fields == {
        name: value for name, value in record.items()
        if name not in ("args", "kwargs", "opts", "claim")
    }  # fmt: skip
