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
    from workers.revoke import install_revoke_hook

    rt = runtime()
    names = rt.catalog.names()  # raises PolicyError on a bad DURABLE_POLICY_FILE
    log.info("durable-retry: policies %s; state in Redis; sweeper every %gs",
             ", ".join(names), rt.settings.sweep_seconds)  # fmt: skip
    install_revoke_hook()
    _harden_redis_transport()


def _harden_redis_transport() -> None:
    """Keep the worker up when the Redis broker goes away or holds garbage (kombu 5.7).

    An item on the queue list that is not a kombu JSON envelope (pushed by
    hand, by another program, or truncated) made kombu raise while reading
    it, and Celery stopped the worker as for an unrecoverable error. It is
    dropped and logged instead (it was already popped; nothing could run it).

    On a lost connection Celery closes it; later, kombu's Redis channel still
    uses that closed transport, to push unacked messages back and to ack the
    messages of attempts that finish after the reconnect. Both failed with an
    ``AttributeError`` (``client.hostname`` of a transport without a client),
    which Celery treats as unrecoverable: every worker shut down when Redis
    restarted. Here that case raises a connection error instead, which Celery
    and kombu already handle (log, reconnect). Nothing is lost: such messages
    stay in kombu's unacked hash (the visibility timeout brings them back, and
    claim drops the copy) and the job state in Redis (due set, leases) has the
    sweepers publish or recover each attempt sooner.
    """
    import redis.exceptions
    from kombu.transport import redis as kombu_redis

    channel_cls: Any = kombu_redis.Channel
    qos_cls: Any = kombu_redis.QoS
    if getattr(channel_cls, "_durable_guard", False):
        return
    connparams, restore_unacked = channel_cls._connparams, qos_cls.restore_unacked
    brpop_read = channel_cls._brpop_read

    def guarded_brpop_read(self: Any, **options: Any) -> Any:
        try:
            return brpop_read(self, **options)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.error(
                "durable-retry: dropped an unreadable message from the broker queue "
                "(not a Celery JSON message): %s: %.200s", type(exc).__name__, exc,
            )  # fmt: skip
            raise kombu_redis.Empty() from exc

    def guarded_connparams(self: Any, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection was closed")
        return connparams(self, asynchronous=asynchronous)

    def guarded_restore_unacked(self: Any, client: Any = None) -> Any:
        transport = self.channel.connection
        if client is None and (transport is None or transport.client is None):
            log.warning(
                "durable-retry: broker connection lost; %d unacked message(s) left to "
                "the visibility timeout and the sweepers", len(self._delivered),
            )  # fmt: skip
            self._delivered.clear()
            return None
        return restore_unacked(self, client)

    channel_cls._connparams = guarded_connparams
    channel_cls._brpop_read = guarded_brpop_read
    qos_cls.restore_unacked = guarded_restore_unacked
    channel_cls._durable_guard = True


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
