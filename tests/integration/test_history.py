"""Attempt history: each job keeps its last N attempts, written by fail and succeed.

Real workers make the history in the first tests; the store's scripts (the
path workers take) make the rest, so a test does not wait for 30 attempts
where the order and the bound are the point.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from policies import Event
from tests import jobs
from tests.conftest import wait_for
from tests.integration.test_cli_jobs import OWNER, RETENTION_MS, make_job, run, run_json
from tests.support.ops import control, runtime
from tests.support.records import in_state
from workers import JobState
from workers.core.outcomes import Payload
from workers.core.records import HISTORY_TEXT_CHARS
from workers.core.store import Claimed, Store
from workers.ops.cli.common import ExitCode

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return runtime().store


def history(job_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = run_json("show", job_id)["history"]
    return entries


def test_show_json_of_a_job_that_failed_30_times_holds_its_last_20_attempts_in_order(
    redis_client, start_worker
):
    start_worker("w1")
    job_id = jobs.always_fails.delay().id

    def failed_30_times() -> bool:
        record = control.status(job_id)
        return record is not None and record.failures.get(Event.ERROR, 0) >= 30

    wait_for(failed_30_times, 120, "30 failed attempts")
    assert control.kill(job_id, "test: stop it").outcome == "killed"
    record = in_state(job_id, JobState.KILLED)
    assert record is not None
    last_failed = record.failures[Event.ERROR]
    assert last_failed >= 30

    entries = history(job_id)

    assert [e["attempt"] for e in entries] == list(range(last_failed - 19, last_failed + 1))
    for entry in entries:
        assert entry["event"] == "error" and entry["decision"] == "retry"
        assert entry["error"] == "RuntimeError: this job never works"
        assert entry["worker"].startswith("w1@")
        assert entry["delay_ms"] == 100
        assert entry["reason"]
        assert entry["started_at"] <= entry["ended_at"]
    assert [e["ended_at"] for e in entries] == sorted(e["ended_at"] for e in entries)


def test_history_names_the_dead_worker_of_an_interruption_and_ends_with_the_success(
    redis_client, start_worker
):
    first = start_worker("w1")
    job_id = jobs.sleepy.delay(4).id
    wait_for(lambda: jobs.body_runs(redis_client, job_id).get(1), 30, "attempt 1 to start")
    first.kill()
    start_worker("w2")
    wait_for(lambda: in_state(job_id, JobState.SUCCEEDED), 60, "attempt 2 elsewhere")

    lost, done = history(job_id)

    assert (lost["attempt"], lost["event"], lost["decision"]) == (1, "interruption", "retry")
    assert lost["worker"].startswith("w1@"), lost  # not the sweeper that judged it
    assert (done["attempt"], done["event"], done["decision"]) == (2, "success", "succeeded")
    assert done["worker"].startswith("w2@")
    assert "error" not in done or done["error"] is None


def test_history_is_bounded_and_its_texts_cut(store):
    long_error = "RuntimeError: " + "x" * 5000
    job_id = make_job(store, JobState.RETRYING, failures=25, error=long_error)

    raw = store.history(job_id)

    assert len(raw) == 20
    entries = [json.loads(text) for text in raw]
    assert [e["attempt"] for e in entries] == list(range(6, 26))
    assert all(len(e["error"]) == HISTORY_TEXT_CHARS for e in entries)
    assert len(store.get(job_id)["last_error"]) > HISTORY_TEXT_CHARS  # the record keeps more


def test_history_attempts_zero_keeps_none(store):
    job_id = make_job(store, JobState.RETRYING)
    claimed = store.claim(job_id, 2, task="t", policy="fast-forever", owner=OWNER,
                          lease_ms=600_000)  # fmt: skip
    assert isinstance(claimed, Claimed)
    store.fail(job_id, 2, OWNER, event="error", error="E", reason="r", give_up=False,
               delay_ms=1000, retention_ms=RETENTION_MS, history=0)  # fmt: skip
    assert [json.loads(e)["attempt"] for e in store.history(job_id)] == [1]


def test_history_expires_with_the_record_and_purge_deletes_it(store, redis_client):
    succeeded = make_job(store, JobState.SUCCEEDED)
    dead = make_job(store, JobState.DEAD, failures=2)
    killed = make_job(store, JobState.RETRYING)
    store.kill(killed, "test", RETENTION_MS, False)
    for job_id in (succeeded, dead, killed):
        assert store.history(job_id), job_id
        job_ttl = redis_client.pttl(store.keys.job(job_id))
        assert job_ttl > 0 and abs(redis_client.pttl(store.keys.history(job_id)) - job_ttl) < 5000

    assert store.resume(dead, None, True)[0] == "resumed"
    assert redis_client.pttl(store.keys.history(dead)) == -1  # kept as long as the record

    now = store.now_ms()
    assert store.purge([succeeded], JobState.SUCCEEDED, now)[0] == 1
    assert not redis_client.exists(store.keys.history(succeeded))


def test_a_record_without_history_still_shows(store, redis_client):
    job_id = make_job(store, JobState.RETRYING, failures=3)
    redis_client.delete(store.keys.history(job_id))  # as a record from before history

    assert history(job_id) == []
    result = run("show", job_id)
    assert result.exit_code == ExitCode.OK, result.output
    assert "history: none kept" in result.output


def test_show_prints_the_attempts_as_a_table(store):
    job_id = make_job(store, JobState.DEAD, failures=3, error="RuntimeError: upstream said no")
    claimed = store.claim(job_id, 4, task="t", policy="p", owner=OWNER, lease_ms=1000,
                          payload=Payload("[]", "{}", "celery"))  # fmt: skip
    assert not isinstance(claimed, Claimed)  # a dead job is not claimed again

    result = run("show", job_id)

    assert result.exit_code == ExitCode.OK, result.output
    out = result.output
    assert "last 3 attempts (oldest first):" in out
    table = out[out.index("last 3 attempts") :].splitlines()[1:]
    assert table[0].split() == [
        "ATTEMPT", "STARTED", "(UTC)", "TOOK", "WORKER", "EVENT", "DECISION", "DELAY",
    ]  # fmt: skip
    rows = [line.split() for line in table if line.startswith("  ") and line.split()[0].isdigit()]
    assert [(r[0], r[4], r[5], r[6]) for r in rows] == [
        ("1", "test-host:1", "error", "retry"),
        ("2", "test-host:1", "error", "retry"),
        ("3", "test-host:1", "error", "dead"),
    ]
    assert out.count("error: RuntimeError: upstream said no") == 3
    assert "why: attempt 3 failed" in out
