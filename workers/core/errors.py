"""Exceptions of the layer: the ones a job raises to say what kind of failure it
hit (``NoCapacity``, ``Permanent``), and the ones the layer raises to its callers."""

from __future__ import annotations

MAX_RETRY_AFTER = 365 * 86400.0
"""The longest delay hint a job may give (seconds). A hint wins over the
backoff ceiling, so under ``duration: off`` only this bounds it: a year keeps
every due time an exact number of milliseconds and a job an operator still sees."""


def checked_retry_after(value: object, what: str = "retry_after") -> float:
    """A job's delay hint in seconds: a finite number from 0 to a year."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not 0 <= seconds <= MAX_RETRY_AFTER:
        raise ValueError(
            f"{what} must be from 0 to {MAX_RETRY_AFTER:.0f} seconds (365 days), got {value!r}"
        )
    return seconds


class NoCapacity(Exception):
    """The job could not get what it needs (a GPU, a slot, a quota) and should wait.

    This is a ``no-capacity`` failure: the policy may give it its own backoff and
    window. ``retry_after`` (seconds) is the job's hint for the next attempt: it
    is the delay, above the policy's backoff ceiling too; only the retry window
    and ``max_attempts`` bound it.
    """

    def __init__(self, message: str = "no capacity", retry_after: float | None = None) -> None:
        if retry_after is not None:
            retry_after = checked_retry_after(retry_after)
        super().__init__(message)
        self.retry_after = retry_after


class RetryRequested(Exception):
    """What ``raise self.retry(...)`` raises in a durable job: a failure of the attempt.

    ``exc`` is the failure the policy judges (the ``exc=`` given, or the
    exception being handled when ``retry()`` was called); without one, the
    failure is this exception itself, an ``error``. ``retry_after`` is the
    delay hint from ``countdown=`` or ``eta=`` (None: the policy's backoff).
    """

    def __init__(
        self, message: str, exc: Exception | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.exc = exc
        self.retry_after = retry_after


class RetryOptionError(TypeError):
    """``self.retry()`` got an option a durable job does not accept; the message says why."""


class Permanent(Exception):
    """Retrying cannot help: the job gives up at once, whatever its policy says."""


class CheckpointTooLarge(ValueError):
    """A checkpoint is larger than ``DURABLE_CHECKPOINT_MAX_BYTES``."""


class NotJSONSerializable(TypeError):
    """A job argument cannot travel as JSON (the only serializer the layer accepts)."""


class StateUnavailable(Exception):
    """Redis, which holds the job state, could not be reached in time.

    Raised after ``DURABLE_REDIS_WAIT_SECONDS`` of retries; nothing about the
    attempt was guessed. A worker hands the message back to the broker.
    """


class EnqueueError(RuntimeError):
    """A durable job could not be enqueued: nothing was published, nothing runs."""


class JobGaveUp(Exception):
    """The policy gave up on a job whose last attempt never finished (its worker
    died or hit the hard time limit): what its result and link_error report."""
