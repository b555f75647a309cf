"""How a failed attempt looks to the policy, and its error text as stored.

An exception becomes a :class:`policies.Failure`: its event (``error``,
``no-capacity``, ``timeout``), its type and the types it derives from (for
``retry_on`` / ``never_retry``), a bounded message and the job's own delay
hint (``NoCapacity(retry_after=...)``, ``self.retry(countdown=...)``). Lost
attempts (a worker that died, a hard time limit) have no exception;
:func:`interruption_failure` describes them.
"""

from __future__ import annotations

from policies import Event, Failure
from workers.core.errors import NoCapacity, RetryRequested

MAX_ERROR_CHARS = 2000


def truncated(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 14] + "...(truncated)"


def safe_message(exc: BaseException) -> str:
    """The exception's message, made safe to store: valid UTF-8, bounded."""
    return truncated(str(exc).encode("utf-8", "replace").decode("utf-8"))


def error_text(failure: Failure) -> str:
    """``Type: message`` (at most MAX_ERROR_CHARS), as ``last_error`` and Flower show it."""
    kind = failure.short_type()
    return truncated(f"{kind}: {failure.message}" if failure.message else kind)


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def failure_from_exception(
    exc: BaseException, timeout_types: tuple[type[BaseException], ...] = ()
) -> Failure:
    """The policy's view of what went wrong; ``timeout_types`` are soft time limits.

    ``self.retry(exc=..., countdown=N)`` is judged as its ``exc`` (so ``retry_on``
    and ``never_retry`` see the real error) with the delay hint N.
    """
    if isinstance(exc, RetryRequested) and exc.exc is not None:
        judged = failure_from_exception(exc.exc, timeout_types)
        if exc.retry_after is None:
            return judged  # the policy's backoff, or the NoCapacity's own hint
        return judged.model_copy(update={"retry_after": exc.retry_after})
    if isinstance(exc, NoCapacity):
        event, retry_after = Event.NO_CAPACITY, exc.retry_after
    elif timeout_types and isinstance(exc, timeout_types):
        event, retry_after = Event.TIMEOUT, None
    elif isinstance(exc, RetryRequested):  # self.retry() with no error to blame
        event, retry_after = Event.ERROR, exc.retry_after
    else:
        event, retry_after = Event.ERROR, None
    return Failure(
        event=event,
        error_type=_dotted(type(exc)),
        error_mro=tuple(_dotted(c) for c in type(exc).__mro__ if c is not object),
        message=safe_message(exc),
        retry_after=retry_after,
    )


def interruption_failure(event: Event, attempt: int) -> Failure:
    """How a lost attempt looks to the policy (its process died, or hit the hard limit)."""
    if event is Event.TIMEOUT:
        message = f"attempt {attempt} hit the hard time limit and its process was killed"
        error_type = "celery.exceptions.TimeLimitExceeded"
    else:
        message = (
            f"attempt {attempt} was interrupted: its worker died or stopped "
            "renewing the lease"
        )
        error_type = "billiard.exceptions.WorkerLostError"
    return Failure(
        event=event, error_type=error_type, error_mro=(error_type,), message=message,
        retry_after=None,
    )  # fmt: skip
