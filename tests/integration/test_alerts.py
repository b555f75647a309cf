"""Told when stuck: once per failure streak, a WARNING and a webhook POST; the stuck index."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis

from tests import jobs
from tests.conftest import wait_for
from tests.integration.test_cli_jobs import OWNER, RETENTION_MS, make_job, run, run_json
from tests.support.ops import runtime
from workers import JobState
from workers.core.outcomes import Payload
from workers.core.store import Claimed, Store

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return runtime().store


class Webhook:
    """A loopback HTTP endpoint that answers 500 to its first ``failures`` POSTs."""

    def __init__(self, failures: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.failures = failures
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.bodies.append(json.loads(body))
                self.send_response(500 if len(hook.bodies) <= hook.failures else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook(failures=2)
    yield hook
    hook.close()


def _claim(store: Store, job_id: str, attempt: int) -> None:
    claimed = store.claim(job_id, attempt, task="t", policy="fast-forever", owner=OWNER,
                          lease_ms=60_000, payload=Payload())  # fmt: skip
    assert isinstance(claimed, Claimed), claimed


def _stuck(store: Store) -> list[str]:
    return store.index_ids(store.keys.stuck, 0, 100)


def test_a_job_is_flagged_stuck_once_per_streak(store):
    job_id = make_job(store, JobState.RETRYING)

    assert store.mark_stuck(job_id, 3_600_000) is None  # not failing that long yet
    assert store.mark_stuck(job_id, 0) is not None
    assert store.mark_stuck(job_id, 0) is None  # once per streak
    assert _stuck(store) == [job_id]

    # An operator's resume starts a new streak: the job may be reported again.
    store.kill(job_id, "x", RETENTION_MS, False)
    parked = make_job(store, JobState.PARKED)
    assert store.mark_stuck(parked, 0) is not None
    assert store.resume(parked, None, new_streak=True)[0] == "resumed"
    assert _stuck(store) == []
    _claim(store, parked, 2)
    store.fail(parked, 2, OWNER, event="error", error="e", reason="r", give_up=False,
               delay_ms=60_000, retention_ms=RETENTION_MS)  # fmt: skip
    assert store.mark_stuck(parked, 0) is not None


def test_the_stuck_index_is_cleaned_when_the_streak_ends(store):
    ids = {name: make_job(store, JobState.RETRYING) for name in
           ("success", "kill", "dead", "checkpoint", "still-failing", "expired")}  # fmt: skip
    for job_id in ids.values():
        assert store.mark_stuck(job_id, 0) is not None

    _claim(store, ids["success"], 2)
    assert store.succeed(ids["success"], 2, OWNER, RETENTION_MS)
    store.kill(ids["kill"], "x", RETENTION_MS, False)
    _claim(store, ids["dead"], 2)
    store.fail(ids["dead"], 2, OWNER, event="error", error="e", reason="r", give_up=True,
               retention_ms=RETENTION_MS)  # fmt: skip
    _claim(store, ids["checkpoint"], 2)
    assert store.checkpoint(ids["checkpoint"], 2, OWNER, '{"done": 1}')
    store.redis.delete(store.keys.job(ids["expired"]))  # as if the record expired
    assert store.trim_ended() >= 1

    # Only the job still in its failing streak is left.
    assert _stuck(store) == [ids["still-failing"]]
    assert "stuck_alerted" not in (store.get(ids["checkpoint"]) or {})


def test_a_stuck_job_is_reported_once_by_log_and_webhook_without_its_arguments(
    store, redis_client, start_worker, webhook
):
    """The webhook fails twice: the worker retries it, and the job goes on failing regardless."""
    worker = start_worker(env={"DURABLE_ALERT_WEBHOOK": webhook.url})
    job_id = jobs.fails_and_alerts.delay("secret-argument-value").id

    wait_for(lambda: len(webhook.bodies) == 3, 30, "the alert to be POSTed, retried twice")
    body = webhook.bodies[0]
    assert webhook.bodies == [body] * 3
    assert body["event"] == "job_stuck" and body["job_id"] == job_id
    assert body["policy"] == "alerting" and body["task"] == "tests.jobs.fails_and_alerts"
    assert body["failing_for_seconds"] >= 1 and body["alert_after_seconds"] == 1
    assert "secret-argument-value" not in json.dumps(body)
    assert "stuck: failing for" in worker.log_text()

    # Many failures later the job is still retrying, and was not reported again.
    failures_then = int(store.get(job_id)["failures:error"])
    wait_for(lambda: int(store.get(job_id)["failures:error"]) >= failures_then + 8,
             30, "more failures after the alert")  # fmt: skip
    assert len(webhook.bodies) == 3
    assert worker.log_text().count("stuck: failing for") == 1
    assert [j["id"] for j in run_json("list", "--stuck")] == [job_id]

    assert run("kill", job_id).exit_code == 0
    assert _stuck(store) == []
