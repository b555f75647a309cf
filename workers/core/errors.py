"""Exceptions of the layer: the ones a job raises to say what kind of failure it
hit (``NoCapacity``, ``Permanent``), and the ones the layer raises to its callers."""

from __future__ import annotations


class NoCapacity(Exception):
    """The job could not get what it needs (a GPU, a slot, a quota) and should wait.

    This is a ``no-capacity`` failure: the policy may give it its own backoff and
    window. ``retry_after`` (seconds) is the job's hint for the next attempt; it
    wins within the policy's backoff ceiling.
    """

    def __init__(self, message: str = "no capacity", retry_after: float | None = None) -> None:
        if retry_after is not None and retry_after < 0:
            raise ValueError(f"retry_after must be >= 0 seconds, got {retry_after!r}")
        super().__init__(message)
        self.retry_after = retry_after


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
