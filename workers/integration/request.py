"""The worker's main-process view of a durable attempt.

When a pool child dies mid-attempt (SIGKILL, OOM, the hard time limit) no code
of the job runs anywhere; only the main process sees ``WorkerLostError`` or
``TimeLimitExceeded``. It expires the attempt's lease at once, so the next
sweep judges the interruption by the policy instead of waiting a whole lease.

A revoke this worker took while an attempt's retry was being recorded is told
to Flower again after the attempt's ``task-retried`` (see ``on_retry``).

When the attempt's outcome script acked the message in Redis already (the
broker is the store's Redis: workers/integration/broker_ack.py), the ack of
an attempt that returned or retried leaves Redis alone (``acknowledge``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import redis
from billiard.exceptions import WorkerLostError
from celery.exceptions import TimeLimitExceeded
from celery.worker import state as worker_state
from celery.worker.request import Request

from policies import Event
from workers.core.refusals import refusal_reason
from workers.integration.broker_ack import unacked_keys
from workers.integration.extension import durable_of
from workers.integration.patches.outcome_ack import acked_in_script
from workers.integration.patches.revoke import announce_revoked
from workers.integration.publish import ATTEMPT_HEADER, attempt_from_header

log = logging.getLogger(__name__)


class DurableRequest(Request):
    """Celery's request, plus: a lost pool child ends its attempt's lease now, and a
    revoke that came while the attempt's retry was recorded is announced again; an
    attempt whose outcome script acked its message is not acked in Redis again."""

    # Set when the attempt returned (its succeed script ran) or retried (its fail
    # script ran): with the broker on the store's Redis, that script acked it.
    _outcome_recorded = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Celery's create_request_cls subclasses the task's Request class with its
        # own on_success (celery/worker/request.py), which would hide an override
        # here: wrap the subclass's own instead.
        super().__init_subclass__(**kwargs)
        on_success = cls.__dict__.get("on_success")
        if on_success is not None:
            cls.on_success = _noting_success(on_success)

    def acknowledge(self) -> None:
        if self._outcome_recorded and not self.acknowledged and unacked_keys(self.app):
            acked_in_script(str(self._message.delivery_tag))
        super().acknowledge()

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        exc = getattr(exc_info, "exception", None)
        exc = getattr(exc, "exc", exc)  # unwrap ExceptionWithTraceback
        event = None
        if isinstance(exc, TimeLimitExceeded):
            event = Event.TIMEOUT
        elif isinstance(exc, (WorkerLostError, SystemExit)):
            event = Event.INTERRUPTION
        if event is not None:
            self._expire_lease(event)
        return super().on_failure(
            exc_info, send_failed_event=send_failed_event, return_ok=return_ok
        )

    def on_retry(self, exc_info: Any) -> None:
        self._outcome_recorded = True
        super().on_retry(exc_info)
        if self.id in worker_state.revoked:
            # Revoked while the pool child recorded this retry: the revoke hook's
            # task-revoked (patches/revoke.py) went out before this task-retried,
            # and Flower shows the last task-retried as RETRY whatever came before
            # it. Say it again, after. (Celery drops the job's deliveries in this
            # worker too: its revoked set is what it judges them by.)
            announce_revoked(self._eventer, self.id)

    def _expire_lease(self, event: Event) -> None:
        attempt = attempt_from_header(self._request_dict.get(ATTEMPT_HEADER))
        if attempt is None:
            return  # a garbage header: claim refused it, nothing holds a lease
        runtime = durable_of(self.app).runtime
        try:
            expired = runtime.store.interrupt(self.id, attempt, self.hostname, event.value)
        except redis.RedisError as exc:
            # The lease still ends on its own; recovery is only slower.
            reason = refusal_reason(exc)
            if reason is not None:
                runtime.refusals.note(exc, reason)
            log.warning("durable-retry: job %s: could not end the lease now (%s); it ends "
                        "on its own", self.id, reason or exc)  # fmt: skip
            return
        if expired:
            log.warning(
                "job %s task=%s attempt=%d event=%s: the pool child died; "
                "the next sweep applies the policy", self.id, self.name, attempt, event.value,
            )  # fmt: skip


def _noting_success(on_success: Callable[..., Any]) -> Callable[..., Any]:
    """``on_success`` that first notes an attempt which returned: its succeed script ran."""

    @functools.wraps(on_success)
    def noting(self: DurableRequest, failed__retval__runtime: Any, **kwargs: Any) -> Any:
        if not failed__retval__runtime[0]:
            self._outcome_recorded = True
        return on_success(self, failed__retval__runtime, **kwargs)

    return noting
