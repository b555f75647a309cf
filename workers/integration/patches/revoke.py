"""Revokes sent from Flower (or ``celery control revoke``) become kills in Redis.

Celery keeps revoked ids in each worker's memory only; after every worker
restarts, a revoked job's queued message runs again (celery#8888). Every
online worker receives the broadcast; each writes the kill into the store
(the script is idempotent) before Celery's own handler runs.

The control panel is process-wide (Celery's ``Panel.data``), so the hook is
installed once per process; each call takes the store of the app whose
worker received the revoke (``state.consumer.app``), through ``control_for``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from celery.utils.functional import maybe_list
from celery.worker.control import Panel

from workers.core.refusals import refusal_reason
from workers.ops.control import Control, InvalidJobId

log = logging.getLogger(__name__)
REASON = "revoked (Flower or celery control)"


def install_revoke_hook(control_for: Callable[[Any], Control]) -> None:
    """Wrap the worker's ``revoke`` control command (once per process).

    ``control_for(app)`` gives the Control of the app whose worker got the revoke.
    """
    original = Panel.data["revoke"]
    if getattr(original, "durable_hook", False):
        return

    def revoke(state: Any, task_id: Any, terminate: bool = False, signal: Any = None,
               **kwargs: Any) -> Any:  # fmt: skip
        control = control_for(state.consumer.app)
        for job_id in maybe_list(task_id) or []:
            try:
                result = control.kill(job_id, REASON, record_unknown=True, revoke=False)
            except (InvalidJobId, redis.RedisError) as exc:
                # Celery's own revoke below still applies in this worker until it restarts.
                reason = refusal_reason(exc)
                refused = f" (Redis refuses writes: {reason})" if reason else ""
                log.warning("durable-retry: revoke of %r not recorded%s: %s; use "
                            "`retryctl kill` once Redis accepts writes", job_id, refused, exc)
                continue
            if result.done:
                log.warning("job %s killed: %s (was %s)", job_id, REASON, result.previous_state)
            killed = result.done or result.previous_state == "killed"
            if killed and result.previous_state != "unknown":
                _announce_revoked(state, job_id)
        return original(state, task_id, terminate=terminate, signal=signal, **kwargs)

    revoke.durable_hook = True  # type: ignore[attr-defined]
    revoke.__doc__ = original.__doc__
    Panel.data["revoke"] = revoke


def _announce_revoked(state: Any, job_id: str) -> None:
    """Send ``task-revoked`` now, so Flower shows the kill.

    Celery sends it only when it drops a message; a job waiting in the due set
    has none, and Flower would show it waiting (RETRY) for ever. Every online
    worker sends one (Flower keeps one row). A job killed before its first
    delivery (``unknown``) is announced when that delivery is dropped.
    """
    announce_revoked(getattr(getattr(state, "consumer", None), "event_dispatcher", None), job_id)


def announce_revoked(dispatcher: Any, job_id: str) -> None:
    """Publish ``task-revoked`` for ``job_id`` through the worker's event
    ``dispatcher`` now, with the task events it has buffered before it; never raises.
    (Also sent again after a ``task-retried`` that came after it: request.py.)"""
    if dispatcher is None or not dispatcher.enabled:
        return
    try:
        dispatcher.send("task-revoked", uuid=job_id, terminated=False, signum=None, expired=False)
        # On an event loop the consumer buffers task events until the loop turns
        # again, and a worker stopped before then drops them (its dispatcher is
        # disabled at shutdown, unflushed): publish the announcement now.
        dispatcher.flush(errors=False, groups=True)
    except Exception as exc:  # an event must never stop the revoke itself
        log.warning("durable-retry: task-revoked event for %s not sent: %s", job_id, exc)
