"""Told when stuck: a job failing for longer than its policy's ``alert_after``.

:func:`report_if_stuck` runs after a failure is recorded (from
``record_failure``, for the task's own failures and the sweeper's
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
import logging
from collections.abc import Callable
from typing import ParamSpec

import redis

from policies import Failure, format_duration
from workers.core.attempt import Attempt
from workers.core.outcomes import FailKind, FailOutcome
from workers.core.refusals import refusal_reason
from workers.core.runtime import Runtime
from workers.core.texts import iso
from workers.core.webhook import send_webhook

log = logging.getLogger("workers.alerts")

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
    rt: Runtime, attempt: Attempt, failure: Failure, outcome: FailOutcome
) -> bool:
    """Report the job once per streak if it has failed for longer than ``alert_after``.

    ``attempt.fields`` is the job hash as the failed attempt saw it (before
    the failure); ``outcome`` is what the store recorded. Costs a round trip only
    when the job has crossed ``alert_after`` and was not reported yet in this
    streak. Returns True if this call reported the job; never raises.
    """
    policy, job_id, task = attempt.policy, attempt.job_id, attempt.task
    if policy.alert_after is None or outcome.kind not in (FailKind.RETRY, FailKind.PARKED):
        return False
    if "stuck_alerted" in attempt.fields:
        return False  # reported earlier in this streak
    first = attempt.fields.get("first_failure_at")
    first_ms = int(first) if first else outcome.now_ms
    alert_after_ms = int(policy.alert_after * 1000)
    if outcome.now_ms - first_ms < alert_after_ms:
        return False
    try:
        marked = rt.store.mark_stuck(job_id, alert_after_ms)
    except redis.RedisError as exc:
        reason = refusal_reason(exc)
        if reason is not None:
            rt.refusals.note(exc, reason)  # told once per streak; checked at the next failure
            return False
        log.warning("durable-retry: job %s may be stuck; not recorded: %s", job_id, exc)
        return False
    if marked is None:
        return False  # another process reported it, or the job moved on
    first_ms, now_ms = marked
    failing_for = (now_ms - first_ms) / 1000
    since = iso(first_ms / 1000)
    log.warning(
        "job %s task=%s policy=%s stuck: failing for %s (since %s; alert_after %s), "
        "attempt %d failed with %s",
        job_id, task, policy.name, format_duration(failing_for), since,
        format_duration(policy.alert_after), attempt.number, failure.event.value,
    )  # fmt: skip
    url = rt.settings.alert_webhook
    if url:
        payload = {
            "event": "job_stuck",
            "job_id": job_id,
            "task": task,
            "policy": policy.name,
            "state": "parked" if outcome.kind is FailKind.PARKED else "retrying",
            "attempts": attempt.number,
            "first_failure_at": since,
            "failing_for_seconds": round(failing_for, 3),
            "alert_after_seconds": policy.alert_after,
            "last_event": failure.event.value,
            "error_type": failure.error_type,
            "next_attempt_at": (
                iso(outcome.due_ms / 1000) if outcome.kind is FailKind.RETRY else None
            ),
        }
        send_webhook(url, payload)
    return True
