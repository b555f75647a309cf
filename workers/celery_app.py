"""The Celery application, configured for durable jobs, and the worker's hooks.

Configuration is lazy: it is read from the ``DURABLE_*`` environment when
Celery first needs it, so importing ``workers`` reads nothing. A worker
validates the policy catalogue at start (a bad file stops it with a clear
message), runs a sweeper in its main process, and turns revokes into kills.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, signals

from workers import metrics  # noqa: F401  (its worker_ready hook serves DURABLE_METRICS_PORT)
from workers.runtime import runtime
from workers.settings import Settings, get_settings

log = logging.getLogger(__name__)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings this layer relies on (see docs/DESIGN.md for the why)."""
    return {
        "broker_url": settings.effective_broker_url,
        # JSON only on the wire: a pickle message is refused by the worker.
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        # The message is acked only after the attempt is recorded in Redis.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Flower builds its view from these events; retries are published by
        # workers, so they send task-sent events too.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        # A countdown message is never restored while its worker still holds it.
        "broker_transport_options": {"visibility_timeout": settings.effective_visibility_timeout},
        "broker_connection_retry_on_startup": True,
        "enable_utc": True,
        "timezone": "UTC",
    }


app = Celery("durable_retry")
app.add_defaults(lambda: celery_config(get_settings()))

_sweepers: dict[int, Any] = {}


@signals.worker_init.connect
def _validate_and_hook(**_: Any) -> None:
    from workers.kombu_guard import harden_redis_transport
    from workers.revoke import install_revoke_hook

    rt = runtime()
    names = rt.catalog.names()  # raises PolicyError on a bad DURABLE_POLICY_FILE
    log.info("durable-retry: policies %s; state in Redis; sweeper every %gs",
             ", ".join(names), rt.settings.sweep_seconds)  # fmt: skip
    install_revoke_hook()
    harden_redis_transport()


@signals.worker_ready.connect
def _start_sweeper(sender: Any = None, **_: Any) -> None:
    from workers.sweeper import Sweeper

    hostname = getattr(sender, "hostname", None) or "worker"
    sweeper = Sweeper(app, runtime(), owner=f"{hostname}:{os.getpid()}")
    _sweepers[os.getpid()] = sweeper
    sweeper.start()


@signals.worker_shutting_down.connect
def _stop_sweeper(**_: Any) -> None:
    sweeper = _sweepers.pop(os.getpid(), None)
    if sweeper is not None:
        sweeper.stop()
