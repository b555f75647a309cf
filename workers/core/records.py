"""What the store knows about one job, as typed values.

The Redis hash is the source of truth; :class:`JobRecord` is its reading for
``retryctl``, ``workers.control.status`` and the tests. :func:`history_from_fields`
turns the same hash into the :class:`policies.History` that ``decide`` needs.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer

from policies import Event, History


class JobState(str, Enum):
    """States of the job state machine (see docs/DESIGN.md)."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    PARKED = "parked"
    KILLED = "killed"

    @property
    def is_terminal(self) -> bool:
        return self in ENDED_STATES


ENDED_STATES = (JobState.SUCCEEDED, JobState.DEAD, JobState.KILLED)
"""The states a job never leaves (its record expires after the retention)."""

DEFAULT_HISTORY_ATTEMPTS = 20
"""Attempts of history a job keeps unless ``DURABLE_HISTORY_ATTEMPTS`` says otherwise."""
HISTORY_TEXT_CHARS = 300
"""A history entry's error text and reason are cut to this many characters:
with the entry count, it bounds a job's history (``last_error`` keeps more)."""


def _json_time(moment: datetime) -> str:
    # Always to the microsecond: a default datetime drops ".000000" on a whole
    # second, and JSON times of unequal width do not sort as text.
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


Time = Annotated[datetime, PlainSerializer(_json_time, when_used="json")]
"""A stored time: UTC, written in JSON as ``2026-12-01T18:34:44.000000Z``."""


# -- field names -----------------------------------------------------------------
# A job hash is written with its fields' long names (``state``, ``next_attempt_at``)
# or, with ``DURABLE_RECORD_FIELDS=short``, with two-character ones (``st``,
# ``na``): Redis keeps a hash compact only while it is small, and the long names
# are a quarter of a retrying job's memory. This table is the one place the two
# meet: the scripts' record library (lua/lib/record.lua) is rendered from it, and
# every reading of a hash in Python goes through :func:`long_field_names`. A
# record keeps the names it was written with until it expires; both are read.
SHORT_FIELDS: dict[str, str] = {
    "task": "tk", "policy": "po", "state": "st", "attempt": "at", "streak_base": "sb",
    "created_at": "ca", "updated_at": "ua", "owner": "ow", "args": "ar", "kwargs": "kw",
    "queue": "qu", "opts": "op", "claim": "cl", "first_failure_at": "ff",
    "last_failure_at": "lf", "next_attempt_at": "na", "last_event": "le",
    "last_error": "er", "held": "hd", "held_by": "hb", "interrupt": "ir",
    "checkpoint": "cp", "reason": "rs", "killed_reason": "kr", "paused_at": "pa",
    "stuck_alerted": "sa",
}  # fmt: skip
SHORT_PREFIXES: dict[str, str] = {"failures:": "f:", "since:": "s:"}
"""Fields named after an event (``failures:error``) keep the event: ``f:error``."""
LONG_FIELDS = {short: long for long, short in SHORT_FIELDS.items()}
LONG_PREFIXES = {short: long for long, short in SHORT_PREFIXES.items()}
SHORT_MARK = SHORT_FIELDS["state"]
"""A record written with short names holds this field (every record has a state)."""


def _renamed(name: str, names: dict[str, str], prefixes: dict[str, str]) -> str:
    if name in names:
        return names[name]
    for old, new in prefixes.items():
        if name.startswith(old):
            return new + name.removeprefix(old)
    return name


def short_field_name(name: str) -> str:
    """``name`` as a record written with short names stores it."""
    return _renamed(name, SHORT_FIELDS, SHORT_PREFIXES)


def _long_field_name(name: str) -> str:
    return _renamed(name, LONG_FIELDS, LONG_PREFIXES)


def long_field_names(fields: dict[str, str]) -> dict[str, str]:
    """A job hash as read from Redis, with every field under its long name
    (a record written with long names is returned as it is). A short record
    leaves out empty kwargs (lua/lib/record.lua): they read as ``{}``."""
    if SHORT_MARK not in fields:
        return fields
    named = {_long_field_name(name): value for name, value in fields.items()}
    if "args" in named and "kwargs" not in named:
        named["kwargs"] = "{}"
    return named


def ms_to_datetime(value: str | int | None) -> datetime | None:
    if value in (None, ""):
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc)


class JobRecord(BaseModel):
    """One job as the store holds it. Times are UTC."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    task: str
    policy: str
    state: JobState
    attempts: int
    first_failure_at: Time | None = None
    last_failure_at: Time | None = None
    next_attempt_at: Time | None = None
    last_event: Event | None = None
    last_error: str | None = None
    reason: str | None = None
    created_at: Time | None = None
    updated_at: Time | None = None
    killed_reason: str | None = None
    failures: dict[Event, int] = {}
    streak_attempts: int = 0
    has_checkpoint: bool = False
    owner: str | None = None
    queue: str | None = None
    held_by: str | None = None  # "budget": a waiting retry held back by max_retry_rate

    @property
    def waits_for_budget(self) -> bool:
        """A waiting retry whose next attempt waits for a slot of its retry budget."""
        return self.held_by == "budget" and self.state in (JobState.RETRYING, JobState.QUEUED)

    @classmethod
    def from_fields(cls, job_id: str, fields: dict[str, str]) -> JobRecord:
        attempts = int(fields.get("attempt") or 0)
        return cls(
            id=job_id,
            task=fields.get("task", ""),
            policy=fields.get("policy", ""),
            state=JobState(fields["state"]),
            attempts=attempts,
            first_failure_at=ms_to_datetime(fields.get("first_failure_at")),
            last_failure_at=ms_to_datetime(fields.get("last_failure_at")),
            next_attempt_at=ms_to_datetime(fields.get("next_attempt_at")),
            last_event=Event(fields["last_event"]) if fields.get("last_event") else None,
            last_error=fields.get("last_error") or None,
            reason=fields.get("reason") or None,
            created_at=ms_to_datetime(fields.get("created_at")),
            updated_at=ms_to_datetime(fields.get("updated_at")),
            killed_reason=fields.get("killed_reason") or None,
            failures=_event_counts(fields, "failures:"),
            streak_attempts=attempts - int(fields.get("streak_base") or 0),
            has_checkpoint="checkpoint" in fields,
            owner=fields.get("owner") or None,
            queue=fields.get("queue") or None,
            held_by=fields.get("held_by") or None,
        )


class AttemptEntry(BaseModel):
    """One attempt in a job's history (``<prefix>:history:<id>``), as ``fail`` and
    ``succeed`` wrote it. Times are UTC; ``decision`` is retry, parked, dead or
    succeeded. Fields a later release adds are ignored (stored state outlives
    releases)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    attempt: int
    started_at: Time | None = None
    ended_at: Time | None = None
    worker: str | None = None
    event: str
    decision: str
    error: str | None = None
    delay_ms: int | None = None
    reason: str | None = None

    @classmethod
    def from_json(cls, text: str) -> AttemptEntry:
        data = json.loads(text)
        for name in ("started_at", "ended_at"):
            data[name] = ms_to_datetime(data.get(name))
        return cls.model_validate(data)


def _event_counts(fields: dict[str, str], prefix: str) -> dict[Event, int]:
    return {
        Event(name[len(prefix) :]): int(value)
        for name, value in fields.items()
        if name.startswith(prefix)
    }


def history_from_fields(fields: dict[str, str]) -> History:
    """The failure history of the attempt that holds the job now (just failed)."""
    attempt = int(fields["attempt"])
    first = fields.get("first_failure_at")
    failures = _event_counts(fields, "failures:")
    since = _event_counts(fields, "since:")
    # An event whose failures began with the streak has no since:<event> (fail.lua
    # writes it only when it differs): its window began at first_failure_at.
    started = {event: since.get(event, int(first or 0)) for event in failures}
    return History(
        attempts=attempt,
        streak_attempts=max(1, attempt - int(fields.get("streak_base") or 0)),
        streak_started_at=int(first) / 1000 if first else None,
        event_failures=failures,
        event_started_at={event: ms / 1000 for event, ms in (since | started).items() if ms},
    )


def checkpoint_from_fields(fields: dict[str, str]) -> Any:
    raw = fields.get("checkpoint")
    return None if raw is None else json.loads(raw)
