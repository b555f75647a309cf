"""What a real Flower shows for a durable job, and how its revoke becomes a kill.

Flower runs as a subprocess against the test Redis, with basic auth; the
tests read its HTTP API (and, for one, its task page in headless Chromium).
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests import jobs
from tests.conftest import wait_for
from tests.support.flower import FlowerProcess, find_chromium, run_chromium
from tests.support.ops import control
from workers import JobState
from workers.core.records import JobRecord
from workers.core.texts import iso
from workers.integration.patches.revoke import _announce_revoked

pytestmark = pytest.mark.integration

# The README's screenshot is rewritten only on request (UPDATE_SCREENSHOTS=1),
# so a test run leaves the working tree clean.
# fail_once_wait_20s's retry rides a broker countdown only where it may be 20 s long.
LONG_COUNTDOWNS = {"DURABLE_MAX_COUNTDOWN": "30"}
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "flower-task.png"
# How long Flower may take to show an event: events reach it over pub/sub and its
# own loop, behind 2 other test processes on 2 cores. A bound, not a speed claim.
FLOWER_SEES = 30


def _record(job_id: str) -> JobRecord | None:
    return control.status(job_id)


def _waiting_after(job_id: str, attempts: int) -> JobRecord | None:
    """The record once ``attempts`` attempts failed and the next one waits."""
    record = control.status(job_id)
    if record is None or record.state is not JobState.RETRYING or record.attempts != attempts:
        return None
    return record


def _row_after(flower: FlowerProcess, job_id: str, attempts: int) -> dict[str, Any] | None:
    """Flower's row once it has the events of failed attempt ``attempts``."""
    row = flower.task(job_id)
    if row is None or row.get("retries") != attempts:
        return None
    if not str(row.get("exception") or "").startswith(f"attempt {attempts} failed:"):
        return None
    return row


def _seconds(value: str | datetime) -> float:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.timestamp()


def test_retrying_job_is_one_flower_row_with_its_attempts_eta_and_retry_note(
    redis_client, start_heartbeat_worker, start_flower
):
    start_heartbeat_worker("w1")
    flower = start_flower(worker="w1")
    job_id = jobs.sync_invoice.apply_async(("INV-1042",), {"failures": 3}).id

    # Attempts 1 and 2 come back after 0.5 s; attempt 3's retry waits 3 s on a countdown.
    record = wait_for(lambda: _waiting_after(job_id, 3), 20, "attempt 3 to fail")
    row = wait_for(lambda: _row_after(flower, job_id, 3), FLOWER_SEES, "flower to show attempt 3")
    assert record.first_failure_at is not None and record.next_attempt_at is not None
    first, due = iso(record.first_failure_at.timestamp()), record.next_attempt_at

    assert row["state"] in ("RETRY", "RECEIVED"), row  # both show Flower's revoke button
    assert row["retries"] == 3
    assert row["eta"] is not None and abs(_seconds(row["eta"]) - _seconds(due)) < 0.002
    note = row["exception"]
    assert note.startswith(
        "attempt 3 failed: NoCapacity: billing API refused invoice INV-1042: 429 Too Many Requests;"
    ), note
    assert f"failing since {first} (" in note
    assert f"next attempt {iso(due.timestamp())}" in note
    assert note.endswith("; policy countdown-3s")
    # The facts are in kwargs for Flower's search; the job itself got its own
    # arguments (an unexpected keyword would have raised TypeError, not NoCapacity).
    shown = ast.literal_eval(row["kwargs"])
    assert shown == {
        "failures": 3,
        "durable_attempts": 3,
        "durable_policy": "countdown-3s",
        "durable_failing_since": first,
    }
    assert row["args"] == "('INV-1042',)"

    # One row: every attempt updated the same task id; the search finds it by its facts.
    assert list(flower.api("/api/tasks", search="kwargs:durable_attempts=3")) == [job_id]
    assert list(flower.api("/api/tasks", search="kwargs:durable_attempts=2")) == []
    found = flower.api("/api/tasks", search="kwargs:durable_policy=countdown-3s")
    assert list(found) == [job_id]
    assert list(flower.api("/api/tasks", search=f"kwargs:durable_failing_since={first}")) == [
        job_id
    ]

    # After the success the row says so and keeps the last retry's facts.
    wait_for(lambda: (_record(job_id) or record).state is JobState.SUCCEEDED, 15, "attempt 4")
    done = wait_for(
        lambda: (r := flower.task(job_id)) is not None and r["state"] == "SUCCESS" and r,
        5,
        "flower to show the success",
    )
    assert done["result"] == "'invoice INV-1042 synced'"
    assert done["retries"] == 3
    assert done["exception"] == note
    assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1, 3: 1, 4: 1}


def _flower_state(flower: FlowerProcess, job_id: str) -> str | None:
    row = flower.task(job_id)
    return None if row is None else str(row["state"])


def test_revoke_from_flower_kills_a_waiting_job_for_good(
    redis_client, start_heartbeat_worker, start_flower
):
    first = start_heartbeat_worker("w1", env=LONG_COUNTDOWNS)
    flower = start_flower(worker="w1")
    # Each fails once, then its retry waits 20 s as a countdown message held by w1.
    terminated = jobs.fail_once_wait_20s.delay().id
    revoked = jobs.fail_once_wait_20s.delay().id
    offline = jobs.fail_once_wait_20s.delay().id  # killed by retryctl while no worker is up
    for job_id in (terminated, revoked, offline):
        wait_for(lambda j=job_id: _waiting_after(j, 1), 20, f"job {job_id} to fail once")
        # Flower shows the retry too: the worker sends task-retried after the record is
        # written, and a task-retried that Flower gets after a task-revoked shows the
        # job waiting (RETRY) again. So the revoke goes out after it, as it would from
        # an operator who clicked the job's revoke button.
        wait_for(lambda j=job_id: _row_after(flower, j, 1), FLOWER_SEES,
                 f"flower to show job {job_id}'s retry")  # fmt: skip

    # Flower answers 200 whatever happens next; the kill is what counts.
    assert flower.revoke(terminated, terminate=True)[0] == 200
    assert flower.revoke(revoked)[0] == 200
    for job_id in (terminated, revoked):
        wait_for(
            lambda j=job_id: (r := _record(j)) is not None and r.state is JobState.KILLED,
            5,
            f"job {job_id} to be killed",
        )

    # Every worker goes away with its in-memory revoke list (before the retries
    # are due: Celery itself would drop them then); the held countdown messages
    # go back on the queue and reach a worker that never saw the revoke.
    first.stop()
    assert redis_client.llen("celery") == 3, "the countdown messages should be back"
    # The worker that recorded the kill told Flower at once (Celery only would
    # when the retry came due).
    for job_id in (terminated, revoked):
        wait_for(lambda j=job_id: _flower_state(flower, j) == "REVOKED", FLOWER_SEES,
                 "flower: REVOKED")  # fmt: skip
    assert control.kill(offline, "killed while no worker was up").outcome == "killed"
    assert _flower_state(flower, offline) in ("RETRY", "RECEIVED")  # nobody told Flower yet
    second = start_heartbeat_worker("w2", env=LONG_COUNTDOWNS)
    for job_id in (terminated, revoked, offline):
        wait_for(
            lambda j=job_id: (
                f"job {j} task=tests.jobs.fail_once_wait_20s delivery for attempt 2 "
                "dropped: killed" in second.log_text()
            ),
            45,  # (the retries come due 20 s after their failures)
            f"the stale delivery of {job_id} to be dropped",
        )
    # The worker that dropped it tells Flower (an ignored task sends no event).
    wait_for(lambda: _flower_state(flower, offline) == "REVOKED", FLOWER_SEES, "flower: REVOKED")
    for job_id in (terminated, revoked, offline):
        record = _record(job_id)
        assert record is not None and record.state is JobState.KILLED
        assert _flower_state(flower, job_id) == "REVOKED"
        assert jobs.body_runs(redis_client, job_id) == {1: 1}
    revoked_record = _record(revoked)
    assert revoked_record is not None
    assert revoked_record.killed_reason == "revoked (Flower or celery control)"


def test_a_revoke_while_the_retry_is_recorded_still_shows_revoked(
    redis_client, start_heartbeat_worker, start_flower
):
    """The revoke lands after the pool child recorded the retry and before the main
    process sent task-retried (the job's task_retry handler sends it and waits for
    the kill). Flower shows the last task-retried as RETRY whatever came before, so
    the worker announces the revoke again after it; without that, Flower showed the
    killed job waiting until its retry came due (here, 10 minutes)."""
    start_heartbeat_worker("w1")
    flower = start_flower(worker="w1")
    job_id = jobs.fail_once_revoked_as_it_retries.delay().id

    def revoked_after_the_retry() -> bool:
        row = flower.task(job_id)
        return row is not None and row["state"] == "REVOKED" and str(
            row.get("exception") or ""
        ).startswith("attempt 1 failed:")  # (task-retried's: Flower has both events)

    wait_for(revoked_after_the_retry, FLOWER_SEES, "flower: REVOKED after the retry")
    record = _record(job_id)
    assert record is not None and record.state is JobState.KILLED
    assert record.killed_reason == "revoked (Flower or celery control)"
    assert jobs.body_runs(redis_client, job_id) == {1: 1}


def test_flower_task_page_shows_attempts_and_first_failure(
    redis_client, start_heartbeat_worker, start_flower, tmp_path
):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install chromium): Flower's page not checked")
    worker = start_heartbeat_worker("w1")
    flower = start_flower(worker="w1")
    job_id = jobs.sync_invoice.delay("INV-1042").id
    wait_for(lambda: _waiting_after(job_id, 3), 20, "attempt 3 to fail")
    # Stop the worker so the page holds still: nothing runs the job meanwhile.
    worker.stop()
    record = _record(job_id)
    assert record is not None and record.first_failure_at is not None
    attempts, first = record.attempts, iso(record.first_failure_at.timestamp())
    wait_for(lambda: _row_after(flower, job_id, attempts), FLOWER_SEES,
             f"flower to show attempt {attempts}")  # fmt: skip

    url = f"http://user:pass@127.0.0.1:{flower.port}/task/{job_id}"
    dom = run_chromium(chromium, url, "--dump-dom")
    assert re.search(rf"<dt>Retries</dt>\s*<dd>\s*{attempts}\s*</dd>", dom), "no Retries row"
    assert f"attempt {attempts} failed: NoCapacity" in dom
    assert f"failing since {first}" in dom
    assert f"'durable_attempts': {attempts}" in dom

    shot = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path / "task.png"
    run_chromium(chromium, url, f"--screenshot={shot}", "--window-size=1400,1060")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_revoke_announcement_is_on_the_wire_when_the_hook_returns(redis_client):
    """The worker's consumer buffers task events until its loop turns again; a
    worker stopped right after a revoke would drop the announcement, and Flower
    would show the killed job waiting (RETRY) for ever. The hook flushes it."""
    # The dispatcher the worker's consumer makes on an event loop (celery's
    # worker/consumer/events.py): task events buffered, flushed "soon".
    flushes_asked: list[bool] = []
    dispatcher = jobs.app.events.Dispatcher(
        jobs.app.connection_for_write(), hostname="w1@test", buffer_group=["task"],
        on_send_buffered=lambda: flushes_asked.append(True),
    )  # fmt: skip
    listener = redis_client.pubsub()
    listener.psubscribe("*celeryev*")
    wait_for(lambda: listener.get_message(timeout=0.1), 5, "the event subscription")
    try:
        state = SimpleNamespace(consumer=SimpleNamespace(event_dispatcher=dispatcher))
        _announce_revoked(state, "job-revoked-then-stopped")
        # No loop turns here: what is published is what the hook itself sent.
        message = wait_for(lambda: listener.get_message(timeout=0.1), 5, "the task-revoked event")
    finally:
        listener.close()
        dispatcher.close()
        dispatcher.connection.close()
    assert flushes_asked == [True]  # the event went through the consumer's buffer
    payload = json.loads(message["data"])
    events = json.loads(base64.b64decode(payload["body"]))
    assert [(e["type"], e["uuid"]) for e in events] == [
        ("task-revoked", "job-revoked-then-stopped")
    ]
