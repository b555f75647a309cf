"""The plain Celery side (``celery -A bench.plain_jobs worker``).

Configured as the durable app is (``workers.integration.extension.celery_config``): JSON
only, acks_late, reject_on_worker_lost, the same prefetch, events on with
task-sent events, the same visibility timeout, no result backend. The bench
checks the two configurations agree before it runs (``bench.harness``).
Retries are Celery's own: ``autoretry_for`` and ``self.retry``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

from bench.brokers import apply_env
from bench.records import record_due_iso, record_lateness_iso, record_start

PLAIN_CONFIG: dict[str, Any] = {
    "task_serializer": "json",
    "result_serializer": "json",
    "event_serializer": "json",
    "accept_content": ["json"],
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_send_task_events": True,
    "task_send_sent_event": True,
    "broker_transport_options": {
        "visibility_timeout": float(os.environ.get("BENCH_PLAIN_VISIBILITY_TIMEOUT", 3600))
    },
    "broker_connection_retry_on_startup": True,
    "enable_utc": True,
    "timezone": "UTC",
}

# BENCH_BROKER_URL: another broker (scenario 10: RabbitMQ); the records stay on Redis.
app = Celery(
    "bench_plain", broker=os.environ.get("BENCH_BROKER_URL") or os.environ.get("BENCH_REDIS_URL")
)
app.conf.update(PLAIN_CONFIG)
apply_env(app)


def _retrying(countdown: float) -> dict[str, Any]:
    return {
        "bind": True,
        "autoretry_for": (ConnectionError,),
        "retry_kwargs": {"countdown": countdown},
        "retry_backoff": False,
        "retry_jitter": False,
        "max_retries": 10,
    }


@app.task(name="bench.plain_jobs.noop")
def noop(i: int) -> None:
    """The success path: nothing but Celery's own work."""


@app.task(name="bench.plain_jobs.fail_once_0s", **_retrying(0))
def fail_once_0s(self: Any, i: int) -> None:
    if self.request.retries == 0:
        raise ConnectionError("upstream refused the connection")


@app.task(name="bench.plain_jobs.fail_once_1s", **_retrying(1))
def fail_once_1s(self: Any, i: int) -> None:
    if self.request.retries == 0:
        raise ConnectionError("upstream refused the connection")


@app.task(name="bench.plain_jobs.late_1s", **_retrying(1))
def late_1s(self: Any, i: int) -> None:
    if self.request.retries == 0:
        raise ConnectionError("upstream refused the connection")
    record_lateness_iso(self.request.eta)


@app.task(
    name="bench.plain_jobs.recovering",
    **_retrying(float(os.environ.get("BENCH_RECOVERY_DELAY", "5"))),
)
def recovering(self: Any, sleep_seconds: float = 0.0) -> None:
    attempt = self.request.retries + 1
    record_start(self.request.id, attempt, self.request.hostname)
    if attempt > 1:
        record_due_iso(self.request.id, self.request.eta)
    if attempt == 1:
        if sleep_seconds:
            time.sleep(sleep_seconds)
        raise ConnectionError("upstream refused the connection")
