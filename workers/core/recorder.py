"""Recording a failed attempt: the store, the log, the stuck alert, the next message.

Shared by the task (its own failures) and the sweeper (interruptions it
recovers from expired leases): the policy's decision is written by one
script (``fail``); then one log line, the stuck check, and, when the retry
rides a broker countdown, its message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from policies import Decision, Event, Failure, GiveUp, format_duration
from workers.core import alerts
from workers.core.attempt import Attempt
from workers.core.failures import error_text
from workers.core.outcomes import DeliveryAck, FailKind
from workers.core.publisher import NextAttempt, Publisher, retry_queue
from workers.core.runtime import Runtime
from workers.core.texts import retry_note

log = logging.getLogger("workers.jobs")


@dataclass(frozen=True)
class Recorded:
    """What was recorded for a failed attempt, for the caller to act on."""

    kind: FailKind  # retry, parked or dead (never stale: that is None)
    note: str  # the sentence Flower shows as the retry's exception
    eta: datetime | None  # when the next attempt is due, for a retry


def record_failure(
    rt: Runtime,
    publisher: Publisher,
    attempt: Attempt,
    failure: Failure,
    decision: Decision,
    *,
    countdown_allowed: bool,
    ack: DeliveryAck | None = None,
) -> Recorded | None:
    """Store a failed attempt's outcome and publish its retry if it rides a countdown.

    ``countdown_allowed`` is False for the sweeper: it holds no broker
    message, so its retries wait in the due set. ``ack``: the delivery the
    script acks with the outcome (a worker's own attempt, the broker on this
    Redis). Returns None when the attempt no longer owns the job (killed
    meanwhile, or taken over).
    """
    settings = rt.settings
    give_up = isinstance(decision, GiveUp)
    delay = 0.0 if isinstance(decision, GiveUp) else decision.delay
    rides_countdown = countdown_allowed and not give_up and delay <= settings.max_countdown
    policy = attempt.policy
    outcome = rt.call_redis(
        lambda: rt.store.fail(
            attempt.job_id, attempt.number, attempt.owner,
            event=failure.event.value, error=error_text(failure), reason=decision.reason,
            give_up=give_up, delay_ms=int(delay * 1000),
            sweeper_grace_ms=rt.held_safety_ms if rides_countdown else 0,
            max_retrying=policy.max_retrying, retention_ms=int(settings.retention * 1000),
            history=settings.history_attempts,
            # The worker that ran it: a sweeper judging a lost attempt holds its lease now.
            worker=attempt.fields.get("owner") or attempt.owner,
            token=attempt.token,
            policy=attempt.fields.get("policy"), ack=ack,
        ),
        "recording a failure",
    )  # fmt: skip
    if outcome.kind is FailKind.STALE:
        log.info(
            "job %s task=%s attempt=%d %s not recorded: the job is %s",
            attempt.job_id, attempt.task, attempt.number, failure.event.value, outcome.state,
        )  # fmt: skip
        return None
    first_failure_at = attempt.first_failure_at or outcome.now_ms / 1000
    due = outcome.due_ms / 1000 if outcome.kind is FailKind.RETRY else None
    note = retry_note(
        attempt=attempt.number, error=error_text(failure), first_failure_at=first_failure_at,
        now=attempt.clock.now(), next_attempt_at=due, policy=policy.name,
    )  # fmt: skip
    log_transition(attempt, failure.event, outcome.kind, delay, decision.reason)
    alerts.report_if_stuck(rt, attempt, failure, outcome)
    eta = datetime.fromtimestamp(due, tz=timezone.utc) if due is not None else None
    if outcome.kind is FailKind.RETRY and rides_countdown and outcome.payload is not None:
        # If the worker dies after this publish, the due entry written above
        # makes a sweeper publish the retry once the death is noticed.
        try:
            publisher.publish(
                NextAttempt(
                    job_id=attempt.job_id, task=attempt.task, payload=outcome.payload,
                    attempt=attempt.number + 1, queue=retry_queue(policy, outcome.payload.queue),
                    eta=eta, policy=policy.name, first_failure_at=first_failure_at,
                    event=failure.event.value,
                )
            )  # fmt: skip
        except Exception:
            # The broker refused it: no countdown holds the retry, so the
            # sweeper publishes it when due.
            log.exception("job %s: could not publish attempt %d; the sweeper will",
                          attempt.job_id, attempt.number + 1)  # fmt: skip
            rt.store.release_hold(attempt.job_id)
    return Recorded(outcome.kind, note, eta)


def log_transition(
    attempt: Attempt, event: Event, kind: FailKind, delay: float, reason: str
) -> None:
    """One line per transition, so the logs alone tell a job's story."""
    level = logging.WARNING if kind in (FailKind.DEAD, FailKind.PARKED) else logging.INFO
    shown_delay = f" delay={format_duration(delay)}" if kind is FailKind.RETRY else ""
    log.log(
        level, "job %s task=%s attempt=%d event=%s decision=%s%s: %s",
        attempt.job_id, attempt.task, attempt.number, event.value, kind.value, shown_delay,
        reason,
    )  # fmt: skip
