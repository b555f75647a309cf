"""The decision: given a policy, what happened so far and this failure, retry or give up.

:func:`decide` only decides. It reads no clock (``now`` is passed in), has no
randomness of its own (``rng`` is passed in) and changes nothing: the caller
records the failure and schedules the retry.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.backoff import compute_backoff
from policies.durations import format_duration
from policies.model import Event, RetryPolicy

Limit = Literal["event", "never_retry", "not_retry_on", "duration", "max_attempts", "permanent"]
"""Why a job gave up. ``permanent`` is for callers: the job said it cannot succeed."""

MESSAGE_LIMIT = 200

# defer_build: the validators are built on first use, not at import (retryctl
# commands that never validate a policy start a little sooner: ~0.03 s measured).
_FROZEN = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class History(BaseModel):
    """What the store keeps about a job, as seen when a failure is decided.

    ``attempts`` and ``streak_attempts`` include the attempt that just failed;
    ``streak_started_at``, ``event_failures`` and ``event_started_at`` do not
    include this failure yet. A streak is the run of failures since the job
    last made progress (a checkpoint) or an operator resumed it.
    """

    model_config = _FROZEN

    attempts: int = Field(ge=1)
    streak_attempts: int = Field(ge=1)
    streak_started_at: float | None = None
    event_failures: dict[Event, int] = {}
    event_started_at: dict[Event, float] = {}

    @field_validator("event_failures")
    @classmethod
    def _counts_not_negative(cls, value: dict[Event, int]) -> dict[Event, int]:
        for event, count in value.items():
            if count < 0:
                raise ValueError(f"{event}: failure count {count} is negative")
        return value

    @model_validator(mode="after")
    def _streak_within_attempts(self) -> History:
        if self.streak_attempts > self.attempts:
            raise ValueError(
                f"streak_attempts {self.streak_attempts} is above attempts {self.attempts}"
            )
        return self


def _dotted(name: str) -> str:
    return name if "." in name else f"builtins.{name}"


class Failure(BaseModel):
    """The failure being decided.

    ``error_mro`` lists the dotted paths of the exception class and all its
    bases, so ``retry_on: [ConnectionError]`` matches ``ConnectionRefusedError``
    without importing anything.
    """

    model_config = _FROZEN

    event: Event
    error_type: str = ""
    error_mro: tuple[str, ...] = ()
    message: str = ""
    retry_after: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @field_validator("error_mro")
    @classmethod
    def _dotted_mro(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_dotted(name) for name in value)

    def classes(self) -> frozenset[str]:
        """Every class path this failure matches."""
        own = {_dotted(self.error_type)} if self.error_type else set()
        return frozenset(self.error_mro) | own

    def short_type(self) -> str:
        """The class name without its module: "ConnectionError"."""
        return self.error_type.rsplit(".", 1)[-1]


@dataclass(frozen=True, slots=True)
class Retry:
    """Run the job again after ``delay`` seconds. ``reason`` is one sentence for operators."""

    delay: float
    reason: str


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop retrying. ``limit`` names what stopped it; ``reason`` says it for operators."""

    reason: str
    limit: Limit


Decision = Retry | GiveUp


def _one_line(message: str) -> str:
    text = " ".join(message.split())
    if len(text) > MESSAGE_LIMIT:
        return text[: MESSAGE_LIMIT - 1] + "…"
    return text


def _what_failed(failure: Failure) -> str:
    message = _one_line(failure.message)
    event = "" if failure.event is Event.ERROR else f" ({failure.event})"
    if failure.error_type:
        detail = f"{failure.short_type()}: {message}" if message else failure.short_type()
        return f"failed{event} with {detail}"
    return f"failed{event}: {message}" if message else f"failed{event}"


def _first_match(patterns: tuple[str, ...], failure: Failure) -> str | None:
    classes = failure.classes()
    return next((pattern for pattern in patterns if pattern in classes), None)


def decide(
    policy: RetryPolicy,
    history: History,
    failure: Failure,
    now: float,
    rng: random.Random,
) -> Decision:
    """Decide whether the job that just failed runs again, and after how long.

    Checks, in order: the event is one the policy retries; for errors,
    ``never_retry`` and ``retry_on``; the attempt limit; then the delay
    (backoff, or exactly the job's ``retry_after`` hint, above the backoff
    max too) and whether the next attempt would still start inside the retry
    window. An event's override replaces the policy's window, attempt limit
    or backoff.
    """
    if not math.isfinite(now):
        raise ValueError(f"now must be a finite time, got {now!r}")
    event = failure.event
    override = policy.override(event)
    event_number = history.event_failures.get(event, 0) + 1

    # The attempt limit that applies, and how far along it this failure is.
    if override.sets("max_attempts"):
        count, limit = event_number, override.max_attempts
        of = limit or "unlimited"
        head = f"attempt {history.streak_attempts} ({event} failure {count} of {of})"
    else:
        count, limit = history.streak_attempts, policy.max_attempts
        head = f"attempt {count} of {limit or 'unlimited'}"
    if history.attempts != history.streak_attempts:
        head += f" in this streak ({history.attempts} in all)"
    said = f"{head} {_what_failed(failure)}"

    if event not in policy.on_events:
        retried = ", ".join(policy.ordered_events())
        return GiveUp(
            f"{said}; gave up: policy {policy.name} does not retry on {event} "
            f"(it retries on {retried})",
            "event",
        )
    if event is Event.ERROR:
        matched = _first_match(policy.never_retry, failure)
        if matched is not None:
            return GiveUp(f"{said}; gave up: {matched} is in never_retry", "never_retry")
        if policy.retry_on and _first_match(policy.retry_on, failure) is None:
            listed = ", ".join(policy.retry_on)
            return GiveUp(
                f"{said}; gave up: {failure.short_type() or 'the error'} is not in "
                f"retry_on ({listed})",
                "not_retry_on",
            )
    if limit is not None and count >= limit:
        return GiveUp(f"{said}; gave up: max_attempts {limit} reached", "max_attempts")

    # The window that applies, and how much of it is used.
    if override.sets("duration"):
        window, started = override.duration, history.event_started_at.get(event)
        window_name, failing = f"{event} window", f"failing with {event} for"
        window_field = f"events.{event}.duration"
    else:
        window, started = policy.duration, history.streak_started_at
        window_name, failing = "retry window", "failing for"
        window_field = "duration"
    elapsed = max(0.0, now - (now if started is None else started))

    if override.backoff is not None:
        backoff, n = override.backoff, event_number
    else:
        backoff, n = policy.backoff, history.streak_attempts
    hint = failure.retry_after
    if hint is None:
        delay = compute_backoff(backoff, n, rng)
        when = f"next attempt in {format_duration(delay)}"
    else:
        # The job knows when it can be answered (a service's Retry-After, a
        # migrated countdown): its hint is the delay, without jitter and above
        # the backoff ceiling too, as in Temporal, Sidekiq, tenacity and Celery.
        # Only the window and the attempt limit bound it.
        delay = hint
        above = f", above backoff max {format_duration(backoff.max)}" if hint > backoff.max else ""
        when = f"next attempt in {format_duration(delay)} (the job's retry_after{above})"

    if window is None:
        return Retry(delay, f"{said}; {window_name} off; {when}")
    if elapsed + delay > window:
        if elapsed >= window:
            used = "used up"
        elif hint is not None:
            # Name the field: the operator sees which limit the hint outlasted.
            used = f"({window_field}) ends before the job's retry_after of {format_duration(hint)}"
        else:
            used = f"ends before the next attempt in {format_duration(delay)}"
        return GiveUp(
            f"{said}; gave up: {window_name} {format_duration(window)} {used} "
            f"({failing} {format_duration(elapsed)})",
            "duration",
        )
    return Retry(
        delay,
        f"{said}; {window_name} {format_duration(window)} ({format_duration(elapsed)} used); "
        f"{when}",
    )
