"""Revokes sent from Flower (or ``celery control revoke``) become kills in Redis.

Celery keeps revoked ids in each worker's memory only; after every worker
restarts, a revoked job's queued message runs again (celery#8888). Every
online worker receives the broadcast; each writes the kill into the store
(the script is idempotent) before Celery's own handler runs.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery.utils.functional import maybe_list
from celery.worker.control import Panel

from workers import control

log = logging.getLogger(__name__)
REASON = "revoked (Flower or celery control)"


def install_revoke_hook() -> None:
    """Wrap the worker's ``revoke`` control command (once per process)."""
    original = Panel.data["revoke"]
    if getattr(original, "durable_hook", False):
        return

    def revoke(state: Any, task_id: Any, terminate: bool = False, signal: Any = None,
               **kwargs: Any) -> Any:  # fmt: skip
        for job_id in maybe_list(task_id) or []:
            try:
                result = control.kill(job_id, REASON, record_unknown=True, revoke=False)
            except (control.InvalidJobId, redis.RedisError) as exc:
                log.warning("durable-retry: revoke of %r not recorded: %s", job_id, exc)
                continue
            if result.done:
                log.warning("job %s killed: %s (was %s)", job_id, REASON, result.previous_state)
        return original(state, task_id, terminate=terminate, signal=signal, **kwargs)

    revoke.durable_hook = True  # type: ignore[attr-defined]
    revoke.__doc__ = original.__doc__
    Panel.data["revoke"] = revoke
