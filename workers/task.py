"""DurableTask: claim the attempt, run the body, record the outcome, retry or give up.

The body of every attempt runs between two store scripts: ``claim`` (is this
delivery the job's next attempt? take a lease) and ``succeed`` or ``fail``
(fenced on the attempt and the lease owner). Failures are classified into the
policy's events and judged by :func:`policies.decide`; a retry waits as a
broker countdown when short, in the due set only when long.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, NoReturn

from celery import Task
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded
from kombu.exceptions import EncodeError
from kombu.utils import json as kombu_json

from policies import (
    Decision,
    Event,
    Failure,
    GiveUp,
    RetryPolicy,
    decide,
    format_duration,
)
from workers import alerts
from workers.clock import RedisClock
from workers.errors import CheckpointTooLarge, NoCapacity, NotJSONSerializable, Permanent
from workers.publish import ATTEMPT_HEADER, publish_attempt, retry_note
from workers.records import checkpoint_from_fields, history_from_fields
from workers.runtime import Runtime, runtime
from workers.store import Claimed

log = logging.getLogger("workers.jobs")

MAX_ERROR_CHARS = 2000
_rng = random.Random()
_running = threading.local()


def _truncated(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 14] + "...(truncated)"


def safe_message(exc: BaseException) -> str:
    """The exception's message, made safe to store: valid UTF-8, bounded."""
    return _truncated(str(exc).encode("utf-8", "replace").decode("utf-8"))


def error_text(failure: Failure) -> str:
    """``Type: message`` (at most MAX_ERROR_CHARS), as ``last_error`` and Flower show it."""
    kind = failure.short_type()
    return _truncated(f"{kind}: {failure.message}" if failure.message else kind)


def attempt_from_header(value: Any) -> int | None:
    """The attempt a delivery is for: 1 without the header, None when it is garbage."""
    if value is None:
        return 1
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 1 else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and int(value) >= 1:
        return int(value)
    return None


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def failure_from_exception(exc: BaseException) -> Failure:
    """The policy's view of what went wrong."""
    if isinstance(exc, NoCapacity):
        event, retry_after = Event.NO_CAPACITY, exc.retry_after
    elif isinstance(exc, SoftTimeLimitExceeded):
        event, retry_after = Event.TIMEOUT, None
    else:
        event, retry_after = Event.ERROR, None
    return Failure(
        event=event,
        error_type=_dotted(type(exc)),
        error_mro=tuple(_dotted(c) for c in type(exc).__mro__ if c is not object),
        message=safe_message(exc),
        retry_after=retry_after,
    )


def not_json_error(task: str, args: Any, kwargs: Any) -> NotJSONSerializable:
    """Name the first argument of ``task`` that JSON cannot carry."""
    named = [(f"argument {i}", value) for i, value in enumerate(args or ())]
    named += [(f"keyword argument {key!r}", value) for key, value in (kwargs or {}).items()]
    for label, value in named:
        try:
            kombu_json.dumps(value)
        except (TypeError, ValueError) as exc:
            return NotJSONSerializable(
                f"{task}: {label} is a {type(value).__name__}, which JSON cannot carry "
                f"({exc}); durable jobs travel as JSON only: pass str, int, float, bool, "
                "None, datetime, UUID, Decimal, or lists and dicts of them (e.g. an id)"
            )
    return NotJSONSerializable(f"{task}: the arguments cannot be encoded as JSON")


class RetryScheduled(Exception):
    """What Flower shows as a waiting job's exception: the retry's facts in words."""

    def __repr__(self) -> str:
        return str(self)


class _Attempt:
    """The attempt this process is running: the job, its lease owner and its clock."""

    def __init__(self, job_id: str, claimed: Claimed, owner: str) -> None:
        self.job_id = job_id
        self.number = claimed.attempt
        self.fields = claimed.fields
        self.owner = owner
        self.clock = RedisClock(claimed.now_ms)


class DurableTask(Task):
    """A Celery task whose failures are judged by a named retry policy.

    Made by :func:`workers.durable_task`; ``policy`` is fixed at import.
    """

    abstract = True
    policy: RetryPolicy
    acks_late = True
    reject_on_worker_lost = True
    # Retries are ours; Celery's own limit must never cut in (None = unbounded
    # on the class, see CELERY_FACTS: never pass max_retries to retry()).
    max_retries = None
    Request = "workers.request:DurableRequest"

    @property
    def _attempt(self) -> _Attempt | None:
        # One task instance serves every thread of a threads/gevent pool, so
        # the running attempt is kept per thread, as Celery keeps self.request.
        return getattr(_running, "attempt", None)

    @_attempt.setter
    def _attempt(self, value: _Attempt | None) -> None:
        _running.attempt = value

    # -- what a bound job sees -------------------------------------------------

    @property
    def attempt(self) -> int:
        """This attempt's number (1 for the first run)."""
        return self._attempt.number if self._attempt else 1

    @property
    def checkpoint_data(self) -> Any:
        """What an earlier attempt saved with :meth:`checkpoint` (or None)."""
        return checkpoint_from_fields(self._attempt.fields) if self._attempt else None

    def checkpoint(self, data: Any) -> None:
        """Save progress (JSON) for later attempts; this also starts a new failure streak."""
        rt = runtime()
        encoded = json.dumps(data)
        size = len(encoded.encode())
        if size > rt.settings.checkpoint_max_bytes:
            raise CheckpointTooLarge(
                f"checkpoint of {size} bytes is larger than DURABLE_CHECKPOINT_MAX_BYTES="
                f"{rt.settings.checkpoint_max_bytes}; store big data elsewhere and checkpoint "
                "a reference to it"
            )
        current = self._attempt
        if current is None:
            return
        stored = rt.call_redis(
            lambda: rt.store.checkpoint(current.job_id, current.number, current.owner, encoded),
            "saving a checkpoint",
        )
        if stored:
            current.fields = {**current.fields, "checkpoint": encoded}
            current.fields.pop("first_failure_at", None)
            current.fields["streak_base"] = str(current.number - 1)

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        """Enqueue the job; an argument JSON cannot carry is named in the error."""
        try:
            return super().apply_async(args, kwargs, **options)
        except EncodeError as exc:
            raise not_json_error(self.name, args, kwargs) from exc

    def retry(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused: a durable job retries by its policy; raise the exception instead."""
        raise TypeError(
            f"{self.name}: durable tasks do not call self.retry(); raise the exception "
            "(or NoCapacity(retry_after=...)) and the policy decides when to retry"
        )

    # -- the attempt -------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly or request.is_eager:
            # Called as a function or with apply(): no broker message to fence.
            return self.run(*args, **kwargs)
        rt = runtime()
        job_id: str = request.id
        owner = f"{request.hostname}:{os.getpid()}"
        wanted = attempt_from_header(request.get(ATTEMPT_HEADER))
        if wanted is None:
            # Not a message this layer published: run nothing, store nothing, drop it.
            log.error(
                "job %s task=%s message refused: header %s=%.60r is not an attempt "
                "number (1, 2, ...); nothing was run or stored",
                job_id, self.name, ATTEMPT_HEADER, request.get(ATTEMPT_HEADER),
            )  # fmt: skip
            raise Reject(f"bad {ATTEMPT_HEADER} header", requeue=False)
        payload = (
            # kombu's JSON, as on the wire: it carries datetimes, UUIDs, Decimals.
            (kombu_json.dumps(list(args)), kombu_json.dumps(kwargs), _delivery_queue(request))
            if wanted == 1
            else ("", "", "")
        )
        claimed = rt.call_redis(
            lambda: rt.store.claim(
                job_id, wanted, task=self.name, policy=self.policy.name, owner=owner,
                lease_ms=rt.lease_ms, payload=payload,
            ),
            "claiming an attempt",
        )  # fmt: skip
        if not isinstance(claimed, Claimed):
            log.info(
                "job %s task=%s delivery for attempt %d dropped: %s (job %s at attempt %d)",
                job_id, self.name, wanted, claimed.why, claimed.state, claimed.attempt,
            )  # fmt: skip
            if claimed.why == "killed":
                self._announce_revoked()
            raise Ignore()
        current = _Attempt(job_id, claimed, owner)
        self._attempt = current
        rt.leases.hold(job_id, current.number, owner)
        try:
            try:
                result = self.run(*args, **kwargs)
            except Ignore:
                # The job asked Celery not to record a result: it did finish.
                self._after_success(rt, current)
                raise
            except Exception as exc:
                self._after_failure(rt, current, exc)
            self._after_success(rt, current)
            return result
        finally:
            rt.leases.release(job_id)
            self._attempt = None

    def _announce_revoked(self) -> None:
        """Flower would show a dropped delivery of a killed job as STARTED for ever
        (an ignored task sends no event): say REVOKED, as Celery does when it drops
        a message it has on its own revoked list."""
        if not self.send_events:
            return
        try:
            self.send_event("task-revoked", terminated=False, signum=None, expired=False)
        except Exception as exc:  # an event must never change what happens to the job
            log.warning("job %s: task-revoked event not sent: %s", self.request.id, exc)

    def _after_success(self, rt: Runtime, current: _Attempt) -> None:
        retention = (
            rt.settings.retention if current.fields.get("first_failure_at")
            else rt.settings.succeeded_retention
        )  # fmt: skip
        recorded = rt.call_redis(
            lambda: rt.store.succeed(
                current.job_id, current.number, current.owner, int(retention * 1000)
            ),
            "recording a success",
        )
        log.info(
            "job %s task=%s attempt=%d succeeded%s",
            current.job_id, self.name, current.number,
            "" if recorded else " (not recorded: the job was killed or taken over meanwhile)",
        )  # fmt: skip

    def _after_failure(self, rt: Runtime, current: _Attempt, exc: Exception) -> NoReturn:
        failure = failure_from_exception(exc)
        now = current.clock.now()
        decision: Decision
        if isinstance(exc, Permanent):
            decision = GiveUp(
                reason=f"attempt {current.number} failed with {error_text(failure)}; "
                "gave up: the job raised Permanent",
                limit="permanent",
            )
        else:
            decision = decide(
                self.policy, history_from_fields(current.fields), failure, now, _rng
            )
        recorded = record_decision(
            rt, self.app, current.job_id, current.number, current.owner,
            task=self.name, policy=self.policy, failure=failure, decision=decision,
            fields=current.fields, now=now, countdown_allowed=True,
        )  # fmt: skip
        if recorded is None:
            raise Ignore()
        if recorded.kind == "dead":
            raise exc
        raise Retry(exc=recorded.note, when=recorded.eta)


class Recorded:
    """The outcome of :func:`record_decision` that the caller must act on."""

    def __init__(self, kind: str, note: RetryScheduled, eta: datetime | None) -> None:
        self.kind = kind
        self.note = note
        self.eta = eta


def record_decision(
    rt: Runtime,
    app: Any,
    job_id: str,
    attempt: int,
    owner: str,
    *,
    task: str,
    policy: RetryPolicy,
    failure: Failure,
    decision: Decision,
    fields: Mapping[str, str],
    now: float,
    countdown_allowed: bool,
) -> Recorded | None:
    """Store a failed attempt's outcome and publish its retry if it rides a countdown.

    Shared by the task (its own failures) and the sweeper (interruptions it
    recovers from expired leases). Returns None when the attempt no longer owns
    the job (killed meanwhile, or taken over).
    """
    settings = rt.settings
    give_up = isinstance(decision, GiveUp)
    delay = 0.0 if isinstance(decision, GiveUp) else decision.delay
    rides_countdown = countdown_allowed and not give_up and delay <= settings.max_countdown
    outcome = rt.call_redis(
        lambda: rt.store.fail(
            job_id, attempt, owner,
            event=failure.event.value, error=error_text(failure), reason=decision.reason,
            give_up=give_up, delay_ms=int(delay * 1000),
            sweeper_grace_ms=rt.lease_ms if rides_countdown else 0,
            max_retrying=policy.max_retrying, retention_ms=int(settings.retention * 1000),
        ),
        "recording a failure",
    )  # fmt: skip
    if outcome.kind == "stale":
        log.info(
            "job %s task=%s attempt=%d %s not recorded: the job is %s",
            job_id, task, attempt, failure.event.value, outcome.state,
        )  # fmt: skip
        return None
    first = fields.get("first_failure_at")
    first_failure_at = int(first) / 1000 if first else outcome.now_ms / 1000
    due = outcome.due_ms / 1000 if outcome.kind == "retry" else None
    note = RetryScheduled(
        retry_note(
            attempt=attempt, error=error_text(failure), first_failure_at=first_failure_at,
            now=now, next_attempt_at=due, policy=policy.name,
        )
    )  # fmt: skip
    log_transition(job_id, task, attempt, failure.event, outcome.kind, delay, decision.reason)
    alerts.report_if_stuck(rt, job_id, attempt, task, policy, failure, fields, outcome)
    eta = datetime.fromtimestamp(due, tz=timezone.utc) if due is not None else None
    if outcome.kind == "retry" and rides_countdown:
        # If the worker dies after this publish, the due entry written above
        # makes a sweeper publish the retry once the death is noticed.
        try:
            publish_attempt(
                app, job_id=job_id, task=task, args_json=fields.get("args") or "[]",
                kwargs_json=fields.get("kwargs") or "{}", attempt=attempt + 1,
                queue=policy.retry_queue or fields.get("queue") or None, eta=eta,
                policy=policy.name, first_failure_at=first_failure_at,
            )  # fmt: skip
        except Exception:
            # The broker refused it: no countdown holds the retry, so the
            # sweeper publishes it when due.
            log.exception("job %s: could not publish attempt %d; the sweeper will", job_id,
                          attempt + 1)  # fmt: skip
            rt.store.release_hold(job_id)
    return Recorded(outcome.kind, note, eta)


def log_transition(
    job_id: str, task: str, attempt: int, event: Event, kind: str, delay: float, reason: str
) -> None:
    """One line per transition, so the logs alone tell a job's story."""
    level = logging.WARNING if kind in ("dead", "parked") else logging.INFO
    shown_delay = f" delay={format_duration(delay)}" if kind == "retry" else ""
    log.log(
        level, "job %s task=%s attempt=%d event=%s decision=%s%s: %s",
        job_id, task, attempt, event.value, kind, shown_delay, reason,
    )  # fmt: skip


def _delivery_queue(request: Any) -> str:
    info = request.delivery_info or {}
    return str(info.get("routing_key") or "")
