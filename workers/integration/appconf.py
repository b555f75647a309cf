"""The Celery settings durable jobs rely on, applied to or checked on the app at worker start.

A project's own app keeps its configuration (often Django's settings under
``CELERY_``); when its worker starts, :func:`prepare_app` goes through the
settings durable jobs rely on and, per setting, either fills in the layer's
value where the project set nothing, or stops the worker when the project's
value would break the guarantees (:class:`AppConfigError` names the setting
and the fix). The table of which is which is in docs/DESIGN.md ("Settings on
the user's app").

Celery's ``app.add_defaults`` is not used for this: a default added that way
sits above ``config_from_object``'s values and would override the project's
own settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery

from workers.core.settings import (
    NO_CLUSTER_BROKER,
    Settings,
    is_cluster_url,
    is_sentinel_url,
    redact_url,
)

log = logging.getLogger(__name__)

REDIS_SCHEMES = ("redis", "rediss", "sentinel", "redis+socket")


class AppConfigError(RuntimeError):
    """A setting of the worker's Celery app conflicts with what durable jobs need."""


def _user_set(app: Celery, key: str) -> bool:
    """Whether the project gave ``key`` a value (any layer of the conf but Celery's defaults)."""
    conf: Any = app.conf
    names = conf._to_keys(key)  # the key with the namespace prefix and its old name
    return any(name in layer for layer in conf.maps[:-1] for name in names)


def _is_redis(url: Any) -> bool:
    first = str(url or "").split(";", 1)[0]
    return first.split("://", 1)[0].lower() in REDIS_SCHEMES


def sentinel_transport_options(settings: Settings, *, force: bool = False) -> dict[str, Any]:
    """kombu's transport options for a ``sentinel://`` broker (none for other brokers,
    unless ``force``): the master group's name (DURABLE_REDIS_SENTINEL_MASTER), and the
    sentinels' own password when they have one."""
    if not force and not is_sentinel_url(settings.broker_url or settings.redis_url):
        return {}
    options: dict[str, Any] = {"master_name": settings.redis_sentinel_master}
    if settings.redis_sentinel_password is not None:
        options["sentinel_kwargs"] = {
            "password": settings.redis_sentinel_password.get_secret_value()
        }
    return options


def prepare_app(
    app: Celery, settings: Settings, *, task_events: bool | None = None,
    warn: Callable[[str], None] = log.warning,
) -> None:  # fmt: skip
    """Apply the layer's settings the project left unset; raise AppConfigError on a conflict.

    ``task_events``: whether the starting worker sends task events (``-E``).
    """
    conf = app.conf
    problems: list[str] = []
    if conf.task_serializer != "json":
        problems.append(
            f"task_serializer={conf.task_serializer!r}: durable jobs travel as JSON only; "
            "set task_serializer='json' (Django: CELERY_TASK_SERIALIZER = 'json')"
        )
    accepted = list(conf.accept_content or [])
    if any(kind not in ("json", "application/json") for kind in accepted):
        problems.append(
            f"accept_content={accepted!r}: a durable worker accepts JSON only; set "
            "accept_content=['json'] (Django: CELERY_ACCEPT_CONTENT = ['json'])"
        )
    if is_cluster_url(str(conf.broker_url or "")):
        problems.append(f"broker_url={redact_url(str(conf.broker_url))!r}: {NO_CLUSTER_BROKER}")
    elif _is_redis(conf.broker_url):
        options = dict(conf.broker_transport_options or {})
        timeout = options.get("visibility_timeout")
        changed = False
        if is_sentinel_url(str(conf.broker_url or "")):
            # The project's own master_name (or sentinel_kwargs) wins; ours fills the gap.
            for name, value in sentinel_transport_options(settings, force=True).items():
                if name not in options and value is not None:
                    options[name] = value
                    changed = True
        if timeout is None:
            options["visibility_timeout"] = settings.effective_visibility_timeout
            changed = True
        if changed:
            conf.broker_transport_options = options
        if timeout is not None and float(timeout) <= settings.max_countdown:
            problems.append(
                f"broker_transport_options['visibility_timeout']={timeout!r} is not longer "
                f"than DURABLE_MAX_COUNTDOWN={settings.max_countdown:g}s: the broker would "
                "deliver a countdown retry again while a worker holds it; raise it (e.g. "
                f"{settings.effective_visibility_timeout:g}; Django: "
                "CELERY_BROKER_TRANSPORT_OPTIONS = {'visibility_timeout': ...}), remove it, "
                "or lower DURABLE_MAX_COUNTDOWN"
            )
    if problems:
        raise AppConfigError(
            f"durable-retry cannot run on Celery app {app.main!r}: " + "; ".join(problems)
        )
    if not conf.task_send_sent_event:
        if _user_set(app, "task_send_sent_event"):
            warn("durable-retry: task_send_sent_event is off: Flower shows a retry only "
                 "once it starts")  # fmt: skip
        else:
            conf.task_send_sent_event = True
    if task_events is False:
        warn("durable-retry: this worker sends no task events: Flower does not see its "
             "jobs; start it with -E or set worker_send_task_events=True")  # fmt: skip
