"""``install(app)``: durable-retry as an extension of a Celery app.

The layer owns no app of its own (``workers.integration.default_app`` is one
ready-made app for projects without one). Installing it on an app, which
``DurableTask`` does when a durable task is registered on that app, gives
the app:

- a :class:`DurableExtension` (``durable_of(app)``): its runtime (settings,
  store, policies, leases), the publisher that sends retries on *this* app's
  broker, and the policy lookup over *this* app's tasks;
- a worker bootstep (:class:`DurableStep`): in every worker of the app it
  applies or checks the Celery settings durable jobs rely on
  (:mod:`workers.integration.appconf`), checks the policy catalogue, registers
  the policies it serves in Redis (``workers.core.policy_registry``), applies
  the Celery/kombu patches, and runs the sweeper (and the metrics endpoint,
  when configured) in the main process.

Everything is kept on the app, as a Flask extension keeps its state, so two
apps in one process never share a store, a publisher or a sweeper.
"""

from __future__ import annotations

import logging
import os
from functools import cached_property
from typing import Any

import redis
from celery import Celery, bootsteps

from policies import RetryPolicy, UnknownPolicyError
from workers.core import policy_registry
from workers.core.runtime import Runtime
from workers.core.settings import Settings, load_settings, redact_url
from workers.core.sweeper import Sweeper
from workers.integration import patches
from workers.integration.appconf import prepare_app, sentinel_transport_options
from workers.integration.options import PolicyOption, policy_from_option
from workers.integration.publish import CeleryPublisher
from workers.integration.quiet import quiet_handed_back_rejects
from workers.ops.control import Control
from workers.ops.metrics import serve

log = logging.getLogger(__name__)

_ATTRIBUTE = "_durable_retry"


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
        "broker_transport_options": {
            "visibility_timeout": settings.effective_visibility_timeout,
            **sentinel_transport_options(settings),
        },
        "broker_connection_retry_on_startup": True,
        "enable_utc": True,
        "timezone": "UTC",
    }


class DurableExtension:
    """durable-retry's state on one Celery app."""

    def __init__(self, app: Celery, settings: Settings | None = None) -> None:
        self.app = app
        self._settings = settings
        # kombu's unacked key names when the outcome scripts ack (broker_ack.py),
        # once checked against the broker; None: kombu acks as it always has.
        self.unacked_keys: tuple[str, str] | None = None
        self.unacked_keys_checked = False

    @cached_property
    def runtime(self) -> Runtime:
        """Settings, store, catalogue and leases; the settings are read on first use."""
        return Runtime(self._settings if self._settings is not None else load_settings())

    @cached_property
    def publisher(self) -> CeleryPublisher:
        return CeleryPublisher(self.app)

    def resolve_policy(self, policy: PolicyOption) -> RetryPolicy:
        """A ``policy=`` option (name, mapping or RetryPolicy) through this app's catalogue."""
        return policy_from_option(policy, self.runtime.catalog)

    def policy_for(self, task: str, policy_name: str) -> RetryPolicy | None:
        """The policy a job runs under: its task's own, else the catalogue's entry of that name."""
        registered = self.app.tasks.get(task) if task else None
        policy = getattr(registered, "policy", None)
        if isinstance(policy, RetryPolicy):
            return policy
        try:
            return self.runtime.catalog.get(policy_name)
        except UnknownPolicyError:
            return None

    def sweeper(self, owner: str, capacity: int = 0) -> Sweeper:
        """A sweeper that publishes on this app and knows this app's tasks;
        ``capacity``: how many messages its worker may hold unstarted."""
        return Sweeper(self.runtime, self.publisher, self.policy_for, owner=owner,
                       capacity=capacity)  # fmt: skip

    def served_policies(self) -> list[RetryPolicy]:
        """The policies this app's workers serve: the catalogue's, then its tasks' own."""
        own = [
            policy
            for _name, task in sorted(self.app.tasks.items())
            if isinstance(policy := getattr(task, "policy", None), RetryPolicy)
        ]
        return [*self.runtime.catalog, *own]

    def register_policies(self, worker: str) -> None:
        """Write the served policies to Redis for retryctl and other readers; never raises."""
        try:
            names = policy_registry.register(self.runtime.store, self.served_policies(), worker)
        except redis.RedisError as exc:
            log.warning("durable-retry: the policies served were not registered in Redis: %s",
                        exc)  # fmt: skip
            return
        log.info("durable-retry: %d policies registered in Redis", len(names))


def install(app: Celery, *, settings: Settings | None = None, configure: bool = False) -> (
    DurableExtension
):
    """Make ``app`` serve durable jobs (idempotent); returns its extension.

    ``settings`` overrides the ``DURABLE_*`` environment (read on first use
    otherwise). ``configure`` adds :func:`celery_config` to the app's defaults,
    as the ready-made app does; a project's own app keeps its configuration,
    and its workers apply or check what durable jobs rely on at start
    (:func:`workers.integration.appconf.prepare_app`).
    """
    extension = getattr(app, _ATTRIBUTE, None)
    if isinstance(extension, DurableExtension):
        return extension
    extension = DurableExtension(app, settings)
    setattr(app, _ATTRIBUTE, extension)
    patches.apply_producer()
    app.steps["worker"].add(DurableStep)
    app.steps["consumer"].add(BrokerReconnect)
    if configure:
        app.add_defaults(lambda: celery_config(extension.runtime.settings))
    return extension


def durable_of(app: Celery) -> DurableExtension:
    """The extension installed on ``app`` (installed now if it was not)."""
    extension = getattr(app, _ATTRIBUTE, None)
    return extension if isinstance(extension, DurableExtension) else install(app)


def control_of(app: Celery) -> Control:
    """Operator actions on ``app``'s job state; its revokes go out on ``app``'s broker."""
    return Control.of_runtime(durable_of(app).runtime, app=app)


class DurableStep(bootsteps.StartStopStep):
    """In each worker of a durable app: check the policies, patch, run the sweeper.

    Started after the pool (so prefork children are forked before the
    sweeper's thread exists) and before the consumer takes messages.
    """

    label = "durable-retry"
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.sweeper: Sweeper | None = None
        # Before the pool forks: the main process tells a refusing Redis once for
        # the worker, its children count quietly; a handed-back message is one line.
        durable_of(parent.app).runtime.refusals.speak_here()
        quiet_handed_back_rejects()

    def start(self, parent: Any) -> None:
        # An exception here stops the worker: Celery logs "Unrecoverable error:
        # <the message>" and exits non-zero, before any message is consumed.
        extension = durable_of(parent.app)
        runtime = extension.runtime
        prepare_app(parent.app, runtime.settings, task_events=getattr(parent, "task_events", None))
        names = runtime.catalog.names()  # raises PolicyError on a bad DURABLE_POLICY_FILE
        log.info("durable-retry: policies %s; state in Redis; sweeper every %gs",
                 ", ".join(names), runtime.settings.sweep_seconds)  # fmt: skip
        runtime.check_record_fields()  # raises SettingsError while an older worker lives
        patches.apply(control_of)
        hostname = getattr(parent, "hostname", None) or "worker"
        extension.register_policies(worker=f"{hostname}:{os.getpid()}")
        self.sweeper = extension.sweeper(
            owner=f"{hostname}:{os.getpid()}", capacity=_prefetch_capacity(parent)
        )
        self.sweeper.start()
        _serve_metrics(runtime)

    def stop(self, parent: Any) -> None:
        if self.sweeper is not None:
            self.sweeper.stop()
            self.sweeper = None

    def terminate(self, parent: Any) -> None:
        self.stop(parent)


# With worker_prefetch_multiplier 0 a worker takes every message it can get.
UNBOUNDED_PREFETCH = 10_000


def _prefetch_capacity(worker: Any) -> int:
    """How many messages this worker may hold unstarted: its prefetch count."""
    multiplier = int(worker.app.conf.worker_prefetch_multiplier or 0)
    concurrency = int(getattr(worker, "concurrency", 1) or 1)
    return multiplier * concurrency if multiplier > 0 else UNBOUNDED_PREFETCH


def _serve_metrics(runtime: Runtime) -> None:
    """Serve Prometheus metrics from this worker if ``DURABLE_METRICS_PORT`` is set."""
    port = runtime.settings.metrics_port
    if port is None:
        return
    try:
        serve(runtime.store, port, refusals=runtime.refusals,
              lease_seconds=runtime.settings.lease_seconds)  # fmt: skip
    except OSError as exc:
        # Two workers on one host with the same port: the first one serves.
        log.warning("durable-retry: metrics not served on port %d: %s", port, exc)
        return
    log.info(
        "durable-retry: Prometheus metrics of %s on port %d",
        redact_url(runtime.settings.redis_url), port,
    )  # fmt: skip


class BrokerReconnect(bootsteps.StartStopStep):
    """Tell the sweeper when this worker's broker connection was made again.

    Celery's consumer runs its steps' ``start`` at every (re)connection; on a
    reconnect it has already dropped the countdown (ETA) messages it held, and
    the broker gives them back only after its visibility timeout (an hour by
    default). Counted as a death, their retries are published when due.
    """

    label = "durable-retry reconnect"
    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, c: Any) -> None:
        if getattr(c, "restart_count", 0) <= 0:
            return  # the first connection: nothing was held before it
        for step in getattr(c.controller, "steps", ()):
            if isinstance(step, DurableStep) and step.sweeper is not None:
                step.sweeper.messages_lost()
