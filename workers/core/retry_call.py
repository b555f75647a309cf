"""What Celery's ``raise self.retry(exc=exc, countdown=N)`` means in a durable job.

Code migrated from plain Celery keeps working: the call becomes a failure of
the attempt, judged by the job's policy like any other, whose delay hint is
``countdown`` (or ``eta`` minus Redis' now). Options that would fight the
policy or the stored job (``max_retries``, new ``args``, another queue...) are
refused with the reason, as ``durable_task`` refuses them at declaration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone

from policies import format_duration
from workers.core.errors import (
    MAX_RETRY_AFTER,
    RetryOptionError,
    RetryRequested,
    checked_retry_after,
)

_STORED = "a durable retry runs the arguments the job was enqueued with (they are stored with it)"
_ROUTED = "retries go to the policy's retry_queue, or to the job's own queue"

# Celery's retry() options a durable job may not pass, and why.
REFUSED = {
    "max_retries": "the policy's max_attempts and duration decide when to stop",
    "args": _STORED,
    "kwargs": _STORED,
    "throw": "throw=False would let this attempt return, which records a success; "
    "raise self.retry(...) so the attempt ends as a failure the policy retries",
    "queue": _ROUTED,
    "routing_key": _ROUTED,
    "exchange": _ROUTED,
    "expires": "Celery copies it to every retry, which would end unbounded retries",
}
_OTHER = (
    "the layer publishes the retry itself; self.retry() takes exc=, countdown= "
    "and eta= (the policy decides the rest)"
)


def refuse(task: str, option: str, value: object) -> RetryOptionError:
    """The error for one refused ``self.retry()`` option, naming it and why."""
    why = REFUSED.get(option, _OTHER)
    return RetryOptionError(
        f"{task}: self.retry({option}={value!r}) is not accepted in a durable job: {why}"
    )


def _hint(countdown: object, eta: object, now: float) -> float | None:
    """Seconds from ``now`` the job asked to wait; a time already past is 0."""
    if countdown is not None and eta is not None:
        raise RetryOptionError("self.retry(): give countdown= or eta=, not both")
    if countdown is not None:
        if isinstance(countdown, bool) or not isinstance(countdown, (int, float)):
            raise RetryOptionError(
                f"self.retry(countdown={countdown!r}): countdown is a number of seconds"
            )
        seconds = float(countdown)
        if not math.isfinite(seconds):
            raise ValueError(f"self.retry(countdown={countdown!r}): countdown must be finite")
        return checked_retry_after(max(0.0, seconds), "countdown")
    if eta is not None:
        if not isinstance(eta, datetime):
            raise RetryOptionError(f"self.retry(eta={eta!r}): eta is a datetime")
        # A naive eta is UTC, as Celery reads it with its default enable_utc.
        aware = eta if eta.tzinfo is not None else eta.replace(tzinfo=timezone.utc)
        seconds = max(0.0, aware.timestamp() - now)
        if seconds > MAX_RETRY_AFTER:
            raise ValueError(
                f"self.retry(eta={eta.isoformat()}): eta must be within 365 days of now"
            )
        return seconds
    return None


def retry_requested(
    task: str,
    *,
    exc: object,
    countdown: object,
    eta: object,
    refused: Mapping[str, object],
    now: float,
    handling: BaseException | None,
) -> RetryRequested:
    """The exception ``self.retry(...)`` raises, or a RetryOptionError for a refused option.

    ``refused`` holds the options that were passed and are never accepted
    (first one named). ``now`` is Redis' time as the attempt carries it;
    ``handling`` is the exception being handled where ``retry()`` was called,
    the failure when no ``exc=`` is given (as Python chains it anyway).
    """
    if refused:
        option, value = next(iter(refused.items()))
        raise refuse(task, option, value)
    if exc is not None and not isinstance(exc, Exception):
        raise RetryOptionError(
            f"{task}: self.retry(exc={exc!r}): exc must be an exception instance, "
            "e.g. exc=ConnectionError('refused')"
        )
    hint = _hint(countdown, eta, now)
    if exc is None and isinstance(handling, Exception) and not isinstance(handling, RetryRequested):
        exc = handling
    wait = "after the policy's backoff" if hint is None else f"in {format_duration(hint)}"
    return RetryRequested(f"the job asked to retry {wait}", exc=exc, retry_after=hint)
