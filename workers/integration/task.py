"""DurableTask: claim the attempt, run the body, record the outcome, retry or give up.

The body of every attempt runs between two store scripts: ``claim`` (is this
delivery the job's next attempt? take a lease) and ``succeed`` or ``fail``
(fenced on the attempt and the lease owner). Failures are judged by
:func:`policies.decide` and recorded by :func:`workers.core.recorder.record_failure`;
a retry waits as a broker countdown when short, in the due set only when long.
Everything the task uses comes from its own app's extension (``durable_of(self.app)``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import sys
import threading
import time
from datetime import datetime
from typing import Any, NoReturn

from celery import Task
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded
from celery.utils import uuid
from kombu.exceptions import EncodeError
from kombu.utils import json as kombu_json

from policies import Decision, Event, GiveUp, PolicyError, RetryPolicy, decide
from policies.rates import format_rate
from workers.core.attempt import Attempt
from workers.core.clock import RedisClock
from workers.core.errors import (
    CheckpointTooLarge,
    EnqueueError,
    Permanent,
    RetryRequested,
    StateUnavailable,
)
from workers.core.failures import error_text, failure_from_exception
from workers.core.outcomes import Claimed, Dropped, FailKind, Payload
from workers.core.recorder import record_failure
from workers.core.records import checkpoint_from_fields
from workers.core.retry_call import retry_requested
from workers.core.runtime import Runtime
from workers.integration.broker_ack import delivery_ack
from workers.integration.enqueue import FirstMessage, not_json_error, unread_reply_to
from workers.integration.extension import DurableExtension, durable_of, install
from workers.integration.options import (
    INLINE,
    check_class_attributes,
    name_for_task,
    policy_from_option,
)
from workers.integration.publish import (
    ATTEMPT_HEADER,
    BUDGET_HEADER,
    EVENT_HEADER,
    attempt_from_header,
)

log = logging.getLogger("workers.jobs")

_rng = random.Random()
_running = threading.local()
_NOT_GIVEN: Any = object()  # retry(max_retries=None) is refused too: None has two meanings


class RetryScheduled(Exception):
    """What Flower shows as a waiting job's exception: the retry's facts in words."""

    def __repr__(self) -> str:
        return str(self)


def _call(rt: Runtime, action: Any, what: str) -> Any:
    """A store call from inside an attempt: after the Redis wait, hand the message back."""
    try:
        return rt.call_redis(action, what)
    except StateUnavailable as exc:
        raise Reject(str(exc), requeue=True) from exc


class DurableTask(Task):
    """A Celery task whose failures are judged by a named retry policy.

    Made by :func:`workers.durable_task`, or by Celery itself with
    ``@app.task(base=DurableTask, policy="forever")`` (or ``shared_task``):
    ``policy`` (a catalogue name, a mapping or a RetryPolicy; "default" when
    absent) is resolved through the app's catalogue when the task class is
    made for that app, and options that fight the policy are refused there,
    as ``durable_task`` refuses them. Registering it on an app installs
    durable-retry on that app.
    """

    abstract = True
    policy: RetryPolicy
    acks_late = True
    reject_on_worker_lost = True
    # Retries are ours; Celery's own limit must never cut in (None = unbounded
    # on the class, see CELERY_FACTS: never pass max_retries to retry()).
    max_retries = None
    Request = "workers.integration.request:DurableRequest"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Celery's _task_from_fun makes a subclass per app, with the decorator's
        # options and the app in the class body: check them before Celery
        # registers the task, so a bad one never reaches a worker.
        super().__init_subclass__(**kwargs)
        check_class_attributes(vars(cls))
        app = vars(cls).get("app")
        if app is not None:
            _resolve_policy(cls, app)

    @classmethod
    def bind(cls, app: Any) -> Any:
        install(app)
        _resolve_policy(cls, app)  # a class-based task registered with app.register_task
        return super().bind(app)

    @property
    def durable(self) -> DurableExtension:
        """durable-retry on this task's app: its runtime, publisher and policies."""
        return durable_of(self.app)

    @property
    def _attempt(self) -> Attempt | None:
        # One task instance serves every thread of a threads/gevent pool, so
        # the running attempt is kept per thread, as Celery keeps self.request.
        return getattr(_running, "attempt", None)

    @_attempt.setter
    def _attempt(self, value: Attempt | None) -> None:
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
        rt = self.durable.runtime
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
        fields = _call(
            rt,
            lambda: rt.store.checkpoint(current.job_id, current.number, current.owner, encoded),
            "saving a checkpoint",
        )
        if fields is not None:
            # The script answered with the whole record: the new streak's
            # counts and windows come from Redis, not from a copy patched here.
            current.fields = fields

    def apply_async(
        self,
        args: Any = None,
        kwargs: Any = None,
        task_id: str | None = None,
        producer: Any = None,
        **options: Any,
    ) -> Any:
        """Enqueue the job: its record is in Redis before its message goes out.

        Raises :class:`~workers.core.errors.EnqueueError` (nothing published)
        when Redis does not take the record; an argument JSON cannot carry is
        named in the error. If the broker refuses the message, the record is
        removed again and the broker's error propagates.
        """
        app = self._get_app()
        if app.conf.task_always_eager:
            return super().apply_async(args, kwargs, task_id=task_id, producer=producer, **options)
        job_id = task_id or uuid()
        options["headers"] = {**(options.get("headers") or {}), ATTEMPT_HEADER: 1}
        with app.producer_or_acquire(producer) as real:
            first = FirstMessage(
                real, self.durable.runtime, job_id, self.name, self.policy.name,
                unread_reply_to(app),
            )  # fmt: skip
            try:
                return super().apply_async(
                    args, kwargs, task_id=job_id, producer=first, **options
                )
            except EncodeError as exc:
                raise not_json_error(self.name, args, kwargs) from exc
            except EnqueueError:
                raise
            except BaseException:
                first.forget()
                raise

    def retry(
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: Exception | None = None,
        throw: bool = True,
        eta: datetime | None = None,
        countdown: float | None = None,
        max_retries: Any = _NOT_GIVEN,
        **options: Any,
    ) -> NoReturn:
        """Celery's ``raise self.retry(exc=exc, countdown=N)``: fail this attempt, hinting N.

        The attempt fails with ``exc`` (or the exception being handled; else a
        :class:`RetryRequested`), judged by the policy like any failure; the
        delay is ``countdown`` seconds, or until ``eta`` by Redis' clock, above
        the backoff max too, while the window and max_attempts still bound the
        job. Without either, the policy's backoff decides. ``max_retries``, new
        ``args``/``kwargs``, ``throw=False`` and message options are refused with
        a :class:`RetryOptionError` saying why (docs/MIGRATING.md).
        """
        refused: dict[str, Any] = {}
        if max_retries is not _NOT_GIVEN:
            refused["max_retries"] = max_retries
        if args is not None:
            refused["args"] = args
        if kwargs is not None:
            refused["kwargs"] = kwargs
        if not throw:
            refused["throw"] = throw
        refused.update(options)
        current = self._attempt
        requested = retry_requested(
            self.name, exc=exc, countdown=countdown, eta=eta, refused=refused,
            now=current.clock.now() if current else time.time(), handling=sys.exc_info()[1],
        )  # fmt: skip
        if current is None and requested.exc is not None:
            # Called as a function (no attempt): raise the error, as Celery does.
            raise requested.exc
        raise requested

    # -- the attempt -------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly or request.is_eager:
            # Called as a function or with apply(): no broker message to fence.
            return self.run(*args, **kwargs)
        rt = self.durable.runtime
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

        if wanted >= 2 and self.policy.has_retry_budget and self._held_by_budget(rt, wanted):
            raise Ignore()
        # This delivery's: a claim or a fail run again is recognised. Kept with the
        # record, so short: it only tells deliveries of one attempt apart.
        token = secrets.token_hex(4)

        def claim(payload: Payload | None) -> Claimed | Dropped | None:
            return rt.store.claim(
                job_id, wanted, task=self.name, policy=self.policy.name, owner=owner,
                lease_ms=rt.lease_ms, payload=payload, token=token,
            )  # fmt: skip

        def payload() -> Payload:
            # kombu's JSON, as on the wire: it carries datetimes, UUIDs, Decimals.
            return Payload(
                kombu_json.dumps(list(args)), kombu_json.dumps(kwargs), _delivery_queue(request)
            )

        # A message without the attempt header was not enqueued through this
        # layer (send_task by name, an older producer): no record was written
        # for it, so the claim makes one from the message, in the same call.
        enqueued_here = request.get(ATTEMPT_HEADER) is not None
        claimed = _call(
            rt, lambda: claim(None if enqueued_here else payload()), "claiming an attempt"
        )
        if claimed is None:
            # The record is gone although the job was enqueued here: the state
            # Redis lost data. Make it again from the message rather than lose the job.
            claimed = _call(rt, lambda: claim(payload()), "claiming an attempt")
        assert claimed is not None  # claim with a payload always answers
        if not isinstance(claimed, Claimed):
            self._log_dropped(wanted, claimed)
            raise Ignore()
        current = Attempt(
            job_id=job_id, number=claimed.attempt, owner=owner, task=self.name,
            policy=self.policy, fields=claimed.fields, clock=RedisClock(claimed.now_ms),
            token=token,
        )  # fmt: skip
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

    def _held_by_budget(self, rt: Runtime, wanted: int) -> bool:
        """A retry of a policy with ``max_retry_rate``: take a slot of its shared budget
        (before claim: no attempt is counted); True when the slot is later and the job
        now waits for it in the due set (the delivery is dropped, nothing ran)."""
        request = self.request
        if request.get(BUDGET_HEADER):
            return False  # it waited for its slot already: the slot is now
        event = request.get(EVENT_HEADER)
        budget = self.policy.retry_budget(
            Event(event) if event in {e.value for e in Event} else None
        )
        if budget is None:
            return False
        turn = _call(
            rt, lambda: rt.store.take_budget(budget.name, budget.interval_ms),
            "taking a retry budget slot",
        )  # fmt: skip
        if turn is None:
            return False
        slot, now = turn
        dropped = _call(
            rt, lambda: rt.store.wait_for_budget(request.id, wanted, slot), "deferring a retry"
        )
        if dropped is not None:
            self._log_dropped(wanted, dropped)
            return True
        log.info(
            "job %s task=%s attempt=%d waits for its retry budget (%s, max_retry_rate %s): "
            "starts in %dms, no attempt counted",
            request.id, self.name, wanted, budget.name, format_rate(budget.rate), slot - now,
        )  # fmt: skip
        return True

    def _log_dropped(self, wanted: int, dropped: Dropped) -> None:
        log.info(
            "job %s task=%s delivery for attempt %d dropped: %s (job %s at attempt %d)",
            self.request.id, self.name, wanted, dropped.why, dropped.state, dropped.attempt,
        )  # fmt: skip
        if dropped.why == "killed":
            self._announce_revoked()

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

    def _after_success(self, rt: Runtime, current: Attempt) -> None:
        retention = (
            rt.settings.retention if current.fields.get("first_failure_at")
            else rt.settings.succeeded_retention
        )  # fmt: skip
        ack = delivery_ack(self)
        recorded = _call(
            rt,
            lambda: rt.store.succeed(
                current.job_id, current.number, current.owner, int(retention * 1000),
                history=rt.settings.history_attempts, ack=ack,
            ),
            "recording a success",
        )
        # A first attempt's success is Celery's own INFO line ("succeeded in"); ours
        # says more only after failures or when it could not be recorded. (At INFO
        # for every job it cost ~130 µs of a solo worker's CPU: bench/FINDINGS.md.)
        level = logging.INFO if current.number > 1 or not recorded else logging.DEBUG
        log.log(
            level, "job %s task=%s attempt=%d succeeded%s",
            current.job_id, self.name, current.number,
            "" if recorded else " (not recorded: the job was killed or taken over meanwhile)",
        )  # fmt: skip

    def _after_failure(self, rt: Runtime, current: Attempt, exc: Exception) -> NoReturn:
        failure = failure_from_exception(exc, timeout_types=(SoftTimeLimitExceeded,))
        if isinstance(exc, RetryRequested) and exc.exc is not None:
            exc = exc.exc  # self.retry(exc=...): the job failed with exc
        decision: Decision
        if isinstance(exc, Permanent):
            decision = GiveUp(
                reason=f"attempt {current.number} failed with {error_text(failure)}; "
                "gave up: the job raised Permanent",
                limit="permanent",
            )
        else:
            decision = decide(self.policy, current.history(), failure, current.clock.now(), _rng)
        try:
            recorded = record_failure(
                rt, self.durable.publisher, current, failure, decision, countdown_allowed=True,
                ack=delivery_ack(self),
            )
        except StateUnavailable as unavailable:
            raise Reject(str(unavailable), requeue=True) from unavailable
        if recorded is None:
            raise Ignore()
        if recorded.kind is FailKind.DEAD:
            raise exc
        raise Retry(exc=RetryScheduled(recorded.note), when=recorded.eta)


def _resolve_policy(cls: type[DurableTask], app: Any) -> None:
    """``policy=`` of ``@app.task(base=DurableTask, ...)`` or ``shared_durable_task``,
    made the named RetryPolicy ``durable_task`` makes (an inline one named after the task)."""
    policy = getattr(cls, "policy", "default")
    if isinstance(policy, RetryPolicy) and policy.name != INLINE:
        return
    name = vars(cls).get("name") or cls.__qualname__
    try:
        catalog = durable_of(app).runtime.catalog
        resolved = policy_from_option(policy, catalog)
        cls.policy = name_for_task(resolved, name, catalog, from_catalog=isinstance(policy, str))
    except PolicyError as exc:
        raise PolicyError([f"task {name}: {problem}" for problem in exc.problems]) from None


def _delivery_queue(request: Any) -> str:
    info = request.delivery_info or {}
    return str(info.get("routing_key") or "")
