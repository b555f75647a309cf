"""The typed answers of the store's scripts.

Each script answers with a small list (see its header in ``lua/``); the store
turns it into one of these values, so callers compare enums and read named
fields, never bare strings and positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class FailKind(str, Enum):
    """What ``fail`` did with a failed attempt."""

    RETRY = "retry"  # waiting for its next attempt (due at ``due_ms``)
    PARKED = "parked"  # waiting for room under its policy's ``max_retrying``
    DEAD = "dead"  # the policy gave up
    STALE = "stale"  # the attempt no longer owns the job: nothing was recorded


@dataclass(frozen=True)
class DeliveryAck:
    """The broker message an outcome script acks as kombu's Redis transport would
    (``ZREM`` of ``tag`` from ``index_key``, ``HDEL`` from ``hash_key``): given only
    when the broker is the store's Redis (workers/integration/broker_ack.py)."""

    index_key: str
    hash_key: str
    tag: str

    @property
    def keys(self) -> list[str]:
        return [self.index_key, self.hash_key]


@dataclass(frozen=True)
class Claimed:
    """The attempt may run. ``fields`` is the job hash after the claim."""

    now_ms: int
    fields: dict[str, str]

    @property
    def attempt(self) -> int:
        return int(self.fields["attempt"])


@dataclass(frozen=True)
class Dropped:
    """The delivery must not run: ``why`` is the job's state or ``stale``."""

    why: str
    state: str
    attempt: int


@dataclass(frozen=True)
class Payload:
    """What it takes to publish a job's message again: its arguments as JSON, the
    queue of its first run and the options of its first enqueue (JSON, or "")."""

    args: str = "[]"
    kwargs: str = "{}"
    queue: str = ""
    options: str = ""


@dataclass(frozen=True)
class NewJob:
    """A record ``enqueue`` writes before the job's first message goes out.

    ``broker_holds``: a broker message carries the job (at once or on its
    countdown); False for a countdown only the due set holds.
    """

    job_id: str
    task: str
    policy: str
    payload: Payload
    countdown_ms: int = 0
    broker_holds: bool = True
    sweeper_grace_ms: int = 0


@dataclass(frozen=True)
class FailOutcome:
    """What ``fail`` did; ``state`` is the job's state when it was ``stale``.

    ``payload`` comes with a retry that a broker countdown will hold (the caller
    publishes it), so the claim never has to carry the arguments.
    """

    kind: FailKind
    now_ms: int = 0
    due_ms: int = 0
    state: str = ""
    payload: Payload | None = None


@dataclass(frozen=True)
class Enqueued:
    """What ``enqueue`` did: ``new`` (the record was written) or ``exists``."""

    new: bool
    created_ms: int = 0
    due_ms: int = 0
    state: str = ""


@dataclass(frozen=True)
class DueJob:
    """A waiting job a sweeper has claimed, with what it takes to publish it."""

    id: str
    state: str
    attempt: int
    task: str
    payload: Payload
    policy: str
    first_failure_at: float | None
    last_event: str | None = None  # the failure the next attempt retries after
    budget_slot_taken: bool = False  # it waited for a retry-budget slot that is now
