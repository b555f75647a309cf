"""The retry policy model: events, backoff, per-event overrides and the policy itself.

Every model is a frozen pydantic model that refuses unknown fields, so a typo in
a policy file is an error instead of a silently ignored option. Durations are
kept as float seconds, ``None`` meaning *off*; the validators read the strings
people write ("90s", "off") through :func:`policies.durations.parse_duration`.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from policies.durations import ACCEPTED as DURATION_ACCEPTED
from policies.durations import format_duration, parse_duration
from policies.rates import format_rate, parse_rate


class Event(str, Enum):
    """What kind of failure ended an attempt."""

    ERROR = "error"  # the job raised
    NO_CAPACITY = "no-capacity"  # the job raised NoCapacity
    INTERRUPTION = "interruption"  # the worker died or was shut down mid-run
    TIMEOUT = "timeout"  # a soft or hard time limit

    def __str__(self) -> str:
        return self.value


EVENT_NAMES = ", ".join(event.value for event in Event)

DEFAULT_WINDOW = 3600.0
"""The retry window when a policy sets none: one hour from the first failure."""

# defer_build: the validators are built on first use, not at import (retryctl
# commands that never validate a policy start a little sooner: ~0.03 s measured).
_FROZEN = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def parse_event(value: object) -> Event:
    """Read an event name, refusing unknown ones with the list of the four."""
    if isinstance(value, Event):
        return value
    if isinstance(value, str):
        try:
            return Event(value)
        except ValueError:
            pass
        close = difflib.get_close_matches(value, [e.value for e in Event], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"unknown event {value!r}{hint}; events are: {EVENT_NAMES}")
    raise ValueError(f"{value!r} is not an event; events are: {EVENT_NAMES}")


_FINITE_ACCEPTED = DURATION_ACCEPTED.removesuffix(", or off")


def _duration_field(value: object, *, allow_off: bool, why_not_off: str = "") -> float | None:
    # YAML 1.1 reads a bare `off` as False; a missing value arrives as None.
    if value is False or value is None:
        value = "off"
    seconds = parse_duration(value)
    if seconds is None and not allow_off:
        raise ValueError(f"{value!r} is refused: {why_not_off}; accepted: {_FINITE_ACCEPTED}")
    return seconds


def _limit_count(value: object, what: str) -> int | None:
    """Read a count limit such as max_attempts: a whole number >= 1, or off."""
    if value is False or value is None or (isinstance(value, str) and value.strip() == "off"):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError(f"got {value!r}; accepted: a whole number of {what} >= 1, or off")


def _format_count(value: int | None) -> int | str:
    return "off" if value is None else value


class Backoff(BaseModel):
    """How long to wait before retry n: ``initial * factor ** (n - 1)``, capped at ``max``.

    ``jitter`` spreads retries so that jobs failing together do not retry together:
    ``full`` (the default) waits a random time between 0 and the capped delay,
    which spreads load best; ``equal`` waits at least half of it; ``none`` waits
    exactly the capped delay. See
    https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/.
    """

    model_config = _FROZEN

    initial: float = 1.0
    factor: float = 2.0
    max: float = 600.0
    jitter: Literal["full", "equal", "none"] = "full"

    @field_validator("initial", mode="before")
    @classmethod
    def _read_initial(cls, value: object) -> float | None:
        return _duration_field(
            value, allow_off=False, why_not_off="the first delay must be a length of time"
        )

    @field_validator("max", mode="before")
    @classmethod
    def _read_max(cls, value: object) -> float | None:
        return _duration_field(
            value,
            allow_off=False,
            why_not_off="backoff max must be finite (unbounded retries need a ceiling)",
        )

    @field_validator("factor", mode="before")
    @classmethod
    def _read_factor(cls, value: object) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            factor = float(value)
            if math.isfinite(factor) and factor >= 1:
                return factor
        raise ValueError(
            f"got {value!r}; accepted: a number >= 1 (1 keeps the delay constant, 2 doubles it)"
        )

    @field_validator("jitter", mode="before")
    @classmethod
    def _read_jitter(cls, value: object) -> object:
        if value is False:  # YAML reads `none`-like `off`/`no` as False
            return "none"
        if value not in ("full", "equal", "none"):
            raise ValueError(f"got {value!r}; accepted: full, equal or none")
        return value

    @model_validator(mode="after")
    def _initial_within_max(self) -> Backoff:
        if self.initial > self.max:
            raise ValueError(
                f"initial {format_duration(self.initial)} is above max "
                f"{format_duration(self.max)}; raise max or lower initial"
            )
        return self

    def effective(self) -> dict[str, Any]:
        """Every field, durations written as strings."""
        return {
            "initial": format_duration(self.initial),
            "factor": self.factor,
            "max": format_duration(self.max),
            "jitter": self.jitter,
        }

    def describe(self) -> str:
        """One phrase for people: "1s x2 up to 10m, full jitter"."""
        factor = f"{self.factor:g}"
        return (
            f"{format_duration(self.initial)} x{factor} up to {format_duration(self.max)}, "
            f"{self.jitter} jitter"
        )


class EventOverride(BaseModel):
    """Limits for one event that replace the policy's own where set.

    An override's window counts from the first failure of *this event* in the
    streak, and its ``max_attempts`` counts failures of this event only. An
    override ``backoff`` replaces the policy's backoff as a whole (fields it
    leaves out take the Backoff defaults) and counts this event's failures.
    """

    model_config = _FROZEN

    duration: float | None = None
    max_attempts: int | None = None
    backoff: Backoff | None = None
    max_retry_rate: float | None = None

    @field_validator("duration", mode="before")
    @classmethod
    def _read_duration(cls, value: object) -> float | None:
        return _duration_field(value, allow_off=True)

    @field_validator("max_attempts", mode="before")
    @classmethod
    def _read_max_attempts(cls, value: object) -> int | None:
        return _limit_count(value, "attempts")

    @field_validator("max_retry_rate", mode="before")
    @classmethod
    def _read_max_retry_rate(cls, value: object) -> float | None:
        return parse_rate(value)

    def sets(self, field: str) -> bool:
        """Whether the override gives this field (``duration: off`` counts as given)."""
        return field in self.model_fields_set

    def effective(self) -> dict[str, Any]:
        """The fields this override sets, written as in a policy file."""
        shown: dict[str, Any] = {}
        if self.sets("duration"):
            shown["duration"] = format_duration(self.duration)
        if self.sets("max_attempts"):
            shown["max_attempts"] = _format_count(self.max_attempts)
        if self.backoff is not None:
            shown["backoff"] = self.backoff.effective()
        if self.sets("max_retry_rate"):
            shown["max_retry_rate"] = format_rate(self.max_retry_rate)
        return shown


NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
NAME_ACCEPTED = (
    "accepted: a policy name of letters, digits, '-', '_' and '.', starting with a letter or digit"
)
_CLASS_PATH_RE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")


def _class_paths(value: object) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple | frozenset | set):
        raise ValueError(f"got {value!r}; accepted: a list of exception classes")
    paths = []
    for item in items:
        if not isinstance(item, str) or not _CLASS_PATH_RE.match(item):
            raise ValueError(
                f"{item!r} is not an exception class; accepted: dotted class paths like "
                "myapp.errors.Flaky, or builtin names like ConnectionError"
            )
        paths.append(item if "." in item else f"builtins.{item}")
    return tuple(paths)


class RetryPolicy(BaseModel):
    """A named answer to "should this failed job run again, and when?".

    ``duration`` is the retry window, counted from the first failure of the
    current failure streak (a checkpoint or an operator's resume starts a new
    streak). It defaults to 1h; ``off`` retries until an operator stops the job.
    """

    model_config = _FROZEN

    name: str = "inline"
    description: str = ""
    on_events: frozenset[Event] = frozenset(Event)
    duration: float | None = DEFAULT_WINDOW
    max_attempts: int | None = None
    backoff: Backoff = Backoff()
    retry_on: tuple[str, ...] = ()
    never_retry: tuple[str, ...] = ()
    events: dict[Event, EventOverride] = {}
    alert_after: float | None = None
    max_retrying: int | None = None
    retry_queue: str | None = None
    max_retry_rate: float | None = None

    @field_validator("name", mode="before")
    @classmethod
    def _read_name(cls, value: object) -> str:
        if isinstance(value, str) and NAME_RE.match(value):
            return value
        raise ValueError(f"got {value!r}; {NAME_ACCEPTED}")

    @field_validator("description", mode="before")
    @classmethod
    def _read_description(cls, value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        raise ValueError(f"got {value!r}; accepted: text")

    @field_validator("on_events", mode="before")
    @classmethod
    def _read_on_events(cls, value: object) -> frozenset[Event]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple | set | frozenset):
            raise ValueError(f"got {value!r}; accepted: a list of events from {EVENT_NAMES}")
        if not items:
            raise ValueError(
                "an empty list retries nothing; name at least one of "
                f"{EVENT_NAMES} (or use max_attempts: 1)"
            )
        return frozenset(parse_event(item) for item in items)

    @field_validator("duration", "alert_after", mode="before")
    @classmethod
    def _read_window(cls, value: object) -> float | None:
        return _duration_field(value, allow_off=True)

    @field_validator("max_attempts", mode="before")
    @classmethod
    def _read_max_attempts(cls, value: object) -> int | None:
        return _limit_count(value, "attempts")

    @field_validator("max_retrying", mode="before")
    @classmethod
    def _read_max_retrying(cls, value: object) -> int | None:
        return _limit_count(value, "jobs")

    @field_validator("retry_on", "never_retry", mode="before")
    @classmethod
    def _read_class_paths(cls, value: object) -> tuple[str, ...]:
        return _class_paths(value)

    @field_validator("events", mode="before")
    @classmethod
    def _read_event_keys(cls, value: object) -> dict[Event, object]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValueError(
                f"got {value!r}; accepted: a mapping from event ({EVENT_NAMES}) to overrides"
            )
        return {parse_event(key): override for key, override in value.items()}

    @field_validator("max_retry_rate", mode="before")
    @classmethod
    def _read_max_retry_rate(cls, value: object) -> float | None:
        return parse_rate(value)

    @field_validator("retry_queue", mode="before")
    @classmethod
    def _read_queue(cls, value: object) -> str | None:
        if value is None or (isinstance(value, str) and value.strip()):
            return value
        raise ValueError(f"got {value!r}; accepted: a Celery queue name")

    @model_validator(mode="after")
    def _overrides_for_handled_events(self) -> RetryPolicy:
        unused = sorted(event.value for event in self.events if event not in self.on_events)
        if unused:
            raise ValueError(
                f"events: {', '.join(unused)} has overrides but is not in on_events "
                f"({', '.join(self.ordered_events())}); add it to on_events or drop the override"
            )
        return self

    def ordered_events(self) -> list[str]:
        """The events this policy retries, in the canonical order."""
        return [event.value for event in Event if event in self.on_events]

    def override(self, event: Event) -> EventOverride:
        """The override for an event, or an empty one that sets nothing."""
        return self.events.get(event) or _no_override()

    @property
    def has_retry_budget(self) -> bool:
        """Whether any retry of this policy is held to a ``max_retry_rate``."""
        return self.max_retry_rate is not None or any(
            override.max_retry_rate is not None for override in self.events.values()
        )

    def retry_budget(self, event: Event | None) -> RetryBudget | None:
        """The budget a retry after a failure of ``event`` draws on, or None.

        An override that sets ``max_retry_rate`` has a budget of its own
        (``<policy>:<event>``; ``off`` lifts the policy's); otherwise every
        retry of the policy shares the policy's (``<policy>``). ``event`` None
        (not known): the policy's.
        """
        override = self.override(event) if event is not None else _no_override()
        if override.sets("max_retry_rate"):
            rate = override.max_retry_rate
            return None if rate is None else RetryBudget(f"{self.name}:{event}", rate)
        if self.max_retry_rate is None:
            return None
        return RetryBudget(self.name, self.max_retry_rate)

    def effective(self) -> dict[str, Any]:
        """Every field with defaults included, written as in a policy file.

        ``parse_policy(policy.effective(), name=policy.name)`` gives the policy back.
        """
        return {
            "name": self.name,
            "description": self.description,
            "on_events": self.ordered_events(),
            "duration": format_duration(self.duration),
            "max_attempts": _format_count(self.max_attempts),
            "backoff": self.backoff.effective(),
            "retry_on": list(self.retry_on),
            "never_retry": list(self.never_retry),
            "events": {
                event.value: self.events[event].effective()
                for event in Event
                if event in self.events
            },
            "alert_after": format_duration(self.alert_after),
            "max_retrying": _format_count(self.max_retrying),
            "retry_queue": self.retry_queue,
            "max_retry_rate": format_rate(self.max_retry_rate),
        }


@dataclass(frozen=True)
class RetryBudget:
    """A rate that retries start no faster than, shared by every worker.

    ``name`` names the shared bucket (``Keys.budget(name)``): the policy's, or
    ``<policy>:<event>`` for an event override's own (names hold no ':').
    """

    name: str
    rate: float  # retries a second

    @property
    def interval_ms(self) -> float:
        """The time one retry's token takes to come back."""
        return 1000.0 / self.rate


@functools.cache
def _no_override() -> EventOverride:
    """An override that changes nothing (made on first use: see defer_build)."""
    return EventOverride()

POLICY_FIELDS = tuple(RetryPolicy.model_fields)
BACKOFF_FIELDS = tuple(Backoff.model_fields)
OVERRIDE_FIELDS = tuple(EventOverride.model_fields)
