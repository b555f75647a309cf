"""Records written with short field names (``DURABLE_RECORD_FIELDS=short``) against
the real Redis: the same life as a long record, read back the same, continued by
either kind of writer, shown in plain words; and a worker set to write them
refuses to start while a worker of an older release is alive.

(CI's second pass runs the whole suite with ``TEST_RECORD_FIELDS=short`` too.)
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import redis

from tests import jobs
from tests.conftest import wait_for
from tests.integration.test_cli_jobs import OWNER, RETENTION_MS, make_job, run
from tests.support.records import in_state
from workers import JobState
from workers.core.outcomes import Claimed, Payload
from workers.core.records import SHORT_FIELDS, SHORT_MARK, SHORT_PREFIXES
from workers.core.store import Store
from workers.ops.cli.common import ExitCode

pytestmark = pytest.mark.integration

LUA = Path(__file__).resolve().parents[2] / "workers" / "core" / "lua"
SHORT_NAMES = set(SHORT_FIELDS.values())
TIMES = {"created_at", "updated_at", "first_failure_at", "last_failure_at", "next_attempt_at",
         "held", "paused_at", "stuck_alerted"}  # fmt: skip


def _stored_names(client: redis.Redis, store: Store, job_id: str) -> set[str]:
    return set(client.hkeys(store.layout.of(job_id).job(job_id)))


def _is_short(name: str) -> bool:
    return name in SHORT_NAMES or any(name.startswith(p) for p in SHORT_PREFIXES.values())


def _life(store: Store, job_id: str) -> list[dict[str, str] | None]:
    """One job through every kind of step, and its record (long names) after each."""
    seen = []
    store.enqueue(job_id, task="tests.jobs.add", policy="fast",
                  payload=Payload("[1, 2]", '{"k": 1}', "celery", '{"priority": 3}'))  # fmt: skip
    seen.append(store.get(job_id))
    for attempt, event in ((1, "error"), (2, "timeout"), (3, "error")):
        claimed = store.claim(job_id, attempt, task="tests.jobs.add", policy="fast",
                              owner=OWNER, lease_ms=60_000, token=f"t{attempt}")  # fmt: skip
        assert isinstance(claimed, Claimed), claimed
        if attempt == 2:
            store.checkpoint(job_id, attempt, OWNER, '{"page": 7}')
        seen.append(store.get(job_id))
        store.fail(job_id, attempt, OWNER, event=event, error=f"E: {event}", reason="r",
                   give_up=False, delay_ms=600_000, retention_ms=RETENTION_MS,
                   token=f"t{attempt}")  # fmt: skip
        seen.append(store.get(job_id))
    store.kill(job_id, "an operator", RETENTION_MS, False)
    seen.append(store.get(job_id))
    return seen


def _without_times(record: dict[str, str] | None) -> dict[str, str]:
    assert record is not None
    return {k: v for k, v in record.items() if k not in TIMES and not k.startswith("since:")}


def test_a_short_record_lives_as_a_long_one_and_stores_only_short_names(redis_client):
    long_store, short_store = Store(redis_client), Store(redis_client, short_fields=True)
    long_id, short_id = f"long-{uuid.uuid4()}", f"short-{uuid.uuid4()}"
    long_life = _life(long_store, long_id)
    short_life = _life(short_store, short_id)
    assert [_without_times(r) for r in short_life] == [_without_times(r) for r in long_life]
    # Names after an event, read back (after the checkpoint's new streak, the error
    # of attempt 3 is an event that started after the streak: since:error).
    assert "failures:timeout" in (short_life[4] or {})
    assert "since:error" in (short_life[6] or {}), short_life[6]
    stored = _stored_names(redis_client, short_store, short_id)
    assert SHORT_MARK in stored and all(_is_short(name) for name in stored), stored
    assert not any(_is_short(n) for n in _stored_names(redis_client, long_store, long_id))
    # Empty kwargs are left out of a short record, and read back as {}.
    empty = make_job(short_store, JobState.RETRYING)
    assert SHORT_FIELDS["kwargs"] not in _stored_names(redis_client, short_store, empty)
    assert (short_store.get(empty) or {})["kwargs"] == "{}"
    assert SHORT_FIELDS["kwargs"] in stored  # '{"k": 1}' is kept
    # Either store reads either record.
    assert short_store.get(long_id) == long_store.get(long_id)
    assert long_store.get(short_id) == short_store.get(short_id)


def test_a_record_keeps_the_names_it_was_written_with_whoever_writes_next(redis_client):
    long_store, short_store = Store(redis_client), Store(redis_client, short_fields=True)
    for first, then in ((long_store, short_store), (short_store, long_store)):
        job_id = make_job(first, JobState.RETRYING, failures=2)
        before = _stored_names(redis_client, first, job_id)
        claimed = then.claim(job_id, 3, task="tests.jobs.always_fails", policy="fast-forever",
                             owner=OWNER, lease_ms=60_000)  # fmt: skip
        assert isinstance(claimed, Claimed), claimed
        assert claimed.fields["attempt"] == "3" and claimed.fields["failures:error"] == "2"
        assert then.succeed(job_id, 3, OWNER, RETENTION_MS)
        after = _stored_names(redis_client, first, job_id)
        assert all(_is_short(n) for n in after) == all(_is_short(n) for n in before)
        assert first.get(job_id) == then.get(job_id)
        assert (first.get(job_id) or {})["state"] == "succeeded"


def test_short_names_take_less_memory(redis_client):
    sizes = {}
    for short in (False, True):
        store = Store(redis_client, short_fields=short)
        job_id = make_job(store, JobState.RETRYING, job_id=f"size-{short}")
        sizes[short] = redis_client.memory_usage(store.keys.job(job_id), samples=0)
    assert sizes[True] < sizes[False], sizes


def test_retryctl_shows_a_short_record_in_plain_words(redis_client):
    store = Store(redis_client, short_fields=True)
    job_id = make_job(store, JobState.RETRYING, failures=2)
    shown = run("show", job_id)
    assert shown.exit_code == ExitCode.OK, shown.output
    assert re.search(r"^state\s+retrying$", shown.output, re.M), shown.output
    assert re.search(r"^failures\s+error 2$", shown.output, re.M), shown.output
    assert re.search(r"^last error\s+RuntimeError: upstream said no$", shown.output, re.M)
    # Empty kwargs, left out of a short record, show as the {} they are.
    assert re.search(r"^kwargs\s+\{\}$", shown.output, re.M), shown.output
    listed = run("list", "--json")
    assert listed.exit_code == ExitCode.OK, listed.output
    assert job_id in listed.output and '"state": "retrying"' in listed.output


def test_every_field_a_script_writes_has_a_short_name():
    """A field the scripts write must be in SHORT_FIELDS, or a short record would
    hold one long name (it would still work, but cost what short names save)."""
    written = set()
    for path in [*LUA.glob("*.lua"), *(LUA / "lib").glob("*.lua")]:
        text = path.read_text()
        # A call's arguments run to the first line that ends with ")".
        for call in re.findall(r"job_call\('H(?:SET|SETNX|INCRBY)', [^,]+, (.*?)\)\n", text, re.S):
            written |= set(re.findall(r"'([a-z_]+:?)'", call))
    # Quoted words in those lines that are values or replies, not field names.
    values = {"running", "queued", "retrying", "succeeded", "dead", "parked", "killed",
              "budget", "already", "no"}  # fmt: skip
    names = {n for n in written - values if not n.endswith(":")}
    prefixes = {n for n in written if n.endswith(":")}
    assert names and names <= set(SHORT_FIELDS), names - set(SHORT_FIELDS)
    assert prefixes <= set(SHORT_PREFIXES), prefixes


def test_a_worker_set_to_short_names_waits_for_no_older_worker(
    redis_client, start_worker, worker_env
):
    store = Store(redis_client)
    # A worker of the release before: it beats (nodes) but never says which names it reads.
    old = "old-release@host:4242"
    redis_client.zadd(store.fleet.nodes, {old: store.now_ms()})
    env = {**worker_env, "DURABLE_RECORD_FIELDS": "short"}
    refused = start_worker("short-names", wait=False, env=env)
    wait_for(lambda: refused.process is not None and refused.process.poll() is not None, 60,
             "the worker to refuse to start")  # fmt: skip
    log = refused.log_text()
    assert "DURABLE_RECORD_FIELDS=short" in log and old in log, log[-3000:]
    assert refused.process is not None and refused.process.returncode != 0
    # Once the old worker is gone the same settings start; the worker says it reads
    # both names, and a message with no record (send_task by name) gets a short one.
    redis_client.zrem(store.fleet.nodes, old)
    start_worker("short-names-2", env=env)
    assert set(redis_client.hvals(store.fleet.node_fields)) == {"long,short"}
    job_id = str(uuid.uuid4())
    jobs.app.send_task("tests.jobs.add", args=[2, 3], task_id=job_id)
    wait_for(lambda: in_state(job_id, JobState.SUCCEEDED), 60, "the job to succeed")
    assert SHORT_MARK in _stored_names(redis_client, store, job_id)
    assert jobs.body_runs(redis_client, job_id) == {1: 1}
