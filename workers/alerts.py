"""Told when stuck: a job failing for longer than its policy's ``alert_after``.

:func:`report_if_stuck` runs after a failure is recorded (from
``record_decision``, for the task's own failures and the sweeper's
interruptions). Once per failure streak, the store flags the job
(``stuck_alerted`` in its hash, set atomically) and adds it to the stuck
index; this process then logs a WARNING and, when ``DURABLE_ALERT_WEBHOOK`` is
set, POSTs JSON to it from a background thread. Nothing here can break the
job: every error is logged and swallowed.

Design limit: detection happens when a failure is recorded, so a job whose
backoff is longer than ``alert_after`` is reported at its first failure after
crossing it, not at the moment it crosses it.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, ParamSpec

import redis

from policies import Failure, RetryPolicy, format_duration
from workers.runtime import Runtime
from workers.settings import redact_url
from workers.store import FailOutcome

log = logging.getLogger("workers.alerts")

WEBHOOK_TIMEOUT_SECONDS = 5.0
# Pauses between webhook attempts: four attempts in all, then give up (logged).
WEBHOOK_PAUSES_SECONDS = (0.5, 2.0, 8.0)


P = ParamSpec("P")


def _never_raises(check: Callable[P, bool]) -> Callable[P, bool]:
    """An alert must never break the job: log any error and answer False."""

    @functools.wraps(check)
    def safe(*args: P.args, **kwargs: P.kwargs) -> bool:
        try:
            return check(*args, **kwargs)
        except Exception:
            log.exception("durable-retry: stuck check failed; the job goes on")
            return False

    return safe


@_never_raises
def report_if_stuck(
    rt: Runtime,
    job_id: str,
    attempt: int,
    task: str,
    policy: RetryPolicy,
    failure: Failure,
    fields: Mapping[str, str],
    outcome: FailOutcome,
) -> bool:
    """Report the job once per streak if it has failed for longer than ``alert_after``.

    ``fields`` is the job hash as the failed attempt saw it (before the
    failure); ``outcome`` is what the store recorded. Costs a round trip only
    when the job has crossed ``alert_after`` and was not reported yet in this
    streak. Returns True if this call reported the job; never raises.
    """
    if policy.alert_after is None or outcome.kind not in ("retry", "parked"):
        return False
    if "stuck_alerted" in fields:
        return False  # reported earlier in this streak
    first = fields.get("first_failure_at")
    first_ms = int(first) if first else outcome.now_ms
    alert_after_ms = int(policy.alert_after * 1000)
    if outcome.now_ms - first_ms < alert_after_ms:
        return False
    try:
        marked = rt.store.mark_stuck(job_id, alert_after_ms)
    except redis.RedisError as exc:
        log.warning("durable-retry: job %s may be stuck; not recorded: %s", job_id, exc)
        return False
    if marked is None:
        return False  # another process reported it, or the job moved on
    first_ms, now_ms = marked
    failing_for = (now_ms - first_ms) / 1000
    since = _iso(first_ms)
    log.warning(
        "job %s task=%s policy=%s stuck: failing for %s (since %s; alert_after %s), "
        "attempt %d failed with %s",
        job_id, task, policy.name, format_duration(failing_for), since,
        format_duration(policy.alert_after), attempt, failure.event.value,
    )  # fmt: skip
    url = rt.settings.alert_webhook
    if url:
        payload = {
            "event": "job_stuck",
            "job_id": job_id,
            "task": task,
            "policy": policy.name,
            "state": "parked" if outcome.kind == "parked" else "retrying",
            "attempts": attempt,
            "first_failure_at": since,
            "failing_for_seconds": round(failing_for, 3),
            "alert_after_seconds": policy.alert_after,
            "last_event": failure.event.value,
            "error_type": failure.error_type,
            "next_attempt_at": _iso(outcome.due_ms) if outcome.kind == "retry" else None,
        }
        send_webhook(url, payload)
    return True


def send_webhook(url: str, payload: dict[str, Any]) -> threading.Thread:
    """POST ``payload`` as JSON from a daemon thread, retrying a bounded number of times."""
    thread = threading.Thread(
        target=_post, args=(url, json.dumps(payload).encode()), name="durable-alert", daemon=True
    )
    thread.start()
    return thread


def _post(url: str, body: bytes) -> None:
    shown = redact_url(url)
    attempts = len(WEBHOOK_PAUSES_SECONDS) + 1
    for number in range(1, attempts + 1):
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
                response.read()
            return
        except Exception as exc:  # HTTP errors, refused connections, timeouts
            if number == attempts:
                log.error(
                    "durable-retry: stuck alert to %s failed %d times, giving up: %s",
                    shown, attempts, exc,
                )  # fmt: skip
                return
            log.warning(
                "durable-retry: stuck alert to %s failed (attempt %d of %d): %s; retrying",
                shown, number, attempts, exc,
            )  # fmt: skip
            time.sleep(WEBHOOK_PAUSES_SECONDS[number - 1])


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")
