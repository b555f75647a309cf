"""``@durable_task``: declare a job whose failures a retry policy judges."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any, overload

from celery import Celery

from policies import RetryPolicy
from workers.integration.default_app import app as default_app
from workers.integration.extension import durable_of
from workers.integration.policy_option import name_for_task, policy_from_option
from workers.integration.task import DurableTask

# Celery task options a durable job may set, passed through unchanged.
PASSED_THROUGH = frozenset({
    "name", "bind", "rate_limit", "time_limit", "soft_time_limit", "ignore_result",
    "store_errors_even_if_ignored", "queue", "routing_key", "exchange", "priority",
    "track_started", "typing", "shared", "trail", "send_events", "throws",
    "resultrepr_maxsize", "pydantic", "compression", "app",
})  # fmt: skip

# Options that would fight the policy or the durability guarantees, and why.
REFUSED = {
    "max_retries": "the policy's max_attempts and duration decide when to stop",
    "autoretry_for": "every exception already goes to the policy; narrow it with "
    "retry_on / never_retry",
    "retry_kwargs": "the policy's backoff decides the delay",
    "retry_backoff": "the policy's backoff decides the delay",
    "retry_backoff_max": "the policy's backoff.max is the ceiling",
    "retry_jitter": "the policy's backoff.jitter decides",
    "default_retry_delay": "the policy's backoff decides the delay",
    "expires": "Celery copies it to every retry, which would end unbounded retries",
    "acks_late": "durable jobs always ack after the attempt is recorded",
    "reject_on_worker_lost": "a lost attempt is an interruption the policy judges",
    "serializer": "only JSON travels on the wire",
    "base": "durable jobs are DurableTask; subclass it instead",
}


class TaskOptionError(TypeError):
    """``@durable_task`` got an option it does not accept."""


def _check_options(options: Mapping[str, Any]) -> None:
    for key in options:
        if key in REFUSED:
            raise TaskOptionError(f"durable_task option {key}= is not accepted: {REFUSED[key]}")
        if key not in PASSED_THROUGH:
            close = difflib.get_close_matches(key, [*PASSED_THROUGH, *REFUSED, "policy"], n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            if close and close[0] in REFUSED:
                why = REFUSED[close[0]]
                hint = f" (did you mean {close[0]}? that one is not accepted either: {why})"
            raise TaskOptionError(
                f"durable_task option {key}= is unknown{hint}; accepted: policy, "
                + ", ".join(sorted(PASSED_THROUGH))
            )


@overload
def durable_task(fun: Callable[..., Any], /) -> DurableTask: ...
@overload
def durable_task(
    *, policy: str | Mapping[str, Any] | RetryPolicy = ..., **options: Any
) -> Callable[[Callable[..., Any]], DurableTask]: ...


def durable_task(
    fun: Callable[..., Any] | None = None,
    /,
    *,
    policy: str | Mapping[str, Any] | RetryPolicy = "default",
    **options: Any,
) -> Any:
    """Declare a durable job: ``@durable_task(policy="forever", bind=True)``.

    ``policy`` is a catalogue name, a mapping of policy fields, or a
    :class:`policies.RetryPolicy`; a bad one fails here, at import. An inline
    policy is named after the task (``myapp.jobs.sync_account``) unless the
    mapping gives a ``name``: jobs, retryctl and the metrics know it by that. Every other
    keyword is a Celery task option; options that would fight the policy
    (``max_retries``, ``autoretry_for``, ``expires``...) and unknown ones are
    refused with the reason.
    """
    _check_options(options)
    celery_app: Celery = options.pop("app", None) or default_app
    catalog = durable_of(celery_app).runtime.catalog
    resolved = policy_from_option(policy, catalog)

    def decorate(function: Callable[..., Any]) -> DurableTask:
        # The task's name, as Celery will make it, names an unnamed inline policy.
        task_name = options.get("name") or celery_app.gen_task_name(
            function.__name__, function.__module__
        )
        named = name_for_task(resolved, task_name, catalog, from_catalog=isinstance(policy, str))
        task: DurableTask = celery_app.task(base=DurableTask, policy=named, **options)(function)
        return task

    return decorate(fun) if fun is not None else decorate

