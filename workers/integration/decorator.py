"""``@durable_task`` and ``@shared_durable_task``: declare a job whose failures a retry
policy judges.

``durable_task`` declares it on one app (``app=``, else the ready-made
``workers.app``); ``shared_durable_task`` declares it, as Celery's
``shared_task`` does, on whichever app a reusable module ends up in (a Django
project's app). The third form, ``@app.task(base=DurableTask, policy=...)``,
needs nothing from here: :class:`DurableTask` checks it itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, overload

from celery import Celery, shared_task

from workers.integration.default_app import app as default_app
from workers.integration.extension import durable_of
from workers.integration.options import (
    PASSED_THROUGH,
    REFUSED,
    PolicyOption,
    TaskOptionError,
    check_options,
    name_for_task,
    policy_before_app,
    policy_from_option,
)
from workers.integration.task import DurableTask

__all__ = [
    "PASSED_THROUGH",
    "REFUSED",
    "TaskOptionError",
    "durable_task",
    "policy_from_option",
    "shared_durable_task",
]


@overload
def durable_task(fun: Callable[..., Any], /) -> DurableTask: ...
@overload
def durable_task(
    *, policy: PolicyOption = ..., **options: Any
) -> Callable[[Callable[..., Any]], DurableTask]: ...


def durable_task(
    fun: Callable[..., Any] | None = None,
    /,
    *,
    policy: PolicyOption = "default",
    **options: Any,
) -> Any:
    """Declare a durable job: ``@durable_task(policy="forever", bind=True)``.

    ``policy`` is a catalogue name, a mapping of policy fields, or a
    :class:`policies.RetryPolicy`; a bad one fails here, at import. An inline
    policy is named after the task (``myapp.jobs.sync_account``) unless the
    mapping gives a ``name``: jobs, retryctl and the metrics know it by that. Every other
    keyword is a Celery task option; options that would fight the policy
    (``max_retries``, ``autoretry_for``, ``expires``...) and unknown ones are
    refused with the reason. ``app=`` is the Celery app the job belongs to
    (default: the ready-made ``workers.app``).
    """
    check_options(options)
    celery_app: Celery = options.pop("app", None) or default_app
    catalog = durable_of(celery_app).runtime.catalog
    resolved = durable_of(celery_app).resolve_policy(policy)

    def decorate(function: Callable[..., Any]) -> DurableTask:
        # The task's name, as Celery will make it, names an unnamed inline policy.
        task_name = options.get("name") or celery_app.gen_task_name(
            function.__name__, function.__module__
        )
        named = name_for_task(resolved, task_name, catalog, from_catalog=isinstance(policy, str))
        task: DurableTask = celery_app.task(base=DurableTask, policy=named, **options)(function)
        return task

    return decorate(fun) if fun is not None else decorate


@overload
def shared_durable_task(fun: Callable[..., Any], /) -> Any: ...
@overload
def shared_durable_task(
    *, policy: PolicyOption = ..., **options: Any
) -> Callable[[Callable[..., Any]], Any]: ...


def shared_durable_task(
    fun: Callable[..., Any] | None = None,
    /,
    *,
    policy: PolicyOption = "default",
    **options: Any,
) -> Any:
    """Declare a durable job in a module that does not know its app, like ``shared_task``.

    The job is made on every Celery app of the process as that app finalizes
    (a Django project's app, once ``proj/celery.py`` is imported), and
    durable-retry installs itself on each. Options are checked here, as
    ``durable_task`` checks them; a policy mapping is checked here too, and a
    policy name through each app's catalogue when the job is made for it (at
    the latest when the worker starts, or at the first ``delay()``).
    """
    check_options(options)
    if "app" in options:
        raise TaskOptionError(
            "shared_durable_task option app= is not accepted: a shared job belongs to "
            "whichever app is current; use durable_task(app=...) for one app"
        )
    checked = policy_before_app(policy)

    def decorate(function: Callable[..., Any]) -> Any:
        return shared_task(base=DurableTask, policy=checked, **options)(function)

    return decorate(fun) if fun is not None else decorate
