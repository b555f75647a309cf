"""A message handed back to the broker because Redis could not take its state is one line.

When an attempt gives up waiting for Redis (unreachable, or refusing writes)
it raises ``Reject(requeue=True)`` and the broker delivers the message again.
Celery logs every Reject at WARNING *with a traceback* (``celery.app.trace``,
``log_policy_reject``): during a long refusal that is a traceback per job per
``DURABLE_REDIS_WAIT_SECONDS``. Nothing went wrong with the job, and the
refusal itself is told once per streak, so this filter keeps Celery's line
and drops the traceback of those Rejects only.
"""

from __future__ import annotations

import logging

from celery.exceptions import Reject

from workers.core.errors import StateUnavailable

TRACE_LOGGER = "celery.app.trace"


class HandedBackFilter(logging.Filter):
    """Drops the traceback of a Reject caused by StateUnavailable; keeps the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, Reject) and isinstance(exc.__cause__, StateUnavailable):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_handed_back_rejects() -> None:
    """Install the filter on Celery's task-trace logger (once per process)."""
    logger = logging.getLogger(TRACE_LOGGER)
    if not any(isinstance(f, HandedBackFilter) for f in logger.filters):
        logger.addFilter(HandedBackFilter())
