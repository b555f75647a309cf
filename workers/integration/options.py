"""What a durable task may be declared with: its policy and the Celery options it accepts.

Shared by every declaration form (``durable_task``, ``shared_durable_task`` and
``@app.task(base=DurableTask, ...)``), so each refuses the same options with
the same words and turns ``policy=`` into a :class:`~policies.RetryPolicy` the
same way. Imports no other part of the integration layer (``task`` and
``decorator`` both import it).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from policies import Catalog, PolicyError, RetryPolicy, parse_policy

PolicyOption = str | Mapping[str, Any] | RetryPolicy

INLINE = "inline"
"""The name a policy has until something names it (``RetryPolicy.name``'s default):
:func:`name_for_task` names it after its task, so readers never mix them up."""

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
    """A durable task was declared with an option it does not accept."""


def refuse(key: str) -> TaskOptionError:
    """The error for a refused option, worded the same for every declaration form."""
    return TaskOptionError(f"durable_task option {key}= is not accepted: {REFUSED[key]}")


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse options that fight the policy, and unknown ones (with a close match)."""
    for key in options:
        if key in REFUSED:
            raise refuse(key)
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


def check_class_attributes(attributes: Mapping[str, Any]) -> None:
    """Refuse a DurableTask subclass that sets a refused option as a class attribute.

    ``@app.task(base=DurableTask, max_retries=3)`` becomes such a subclass
    (Celery's ``_task_from_fun`` puts the options in the class). Unknown names
    are not refused here: a subclass may well have attributes of its own.
    """
    for key in attributes:
        if key in REFUSED:
            raise refuse(key)


def policy_before_app(policy: PolicyOption) -> str | RetryPolicy:
    """What can be checked of ``policy=`` before the app (and its catalogue) is known:
    a mapping is parsed; a name is left for the app's catalogue."""
    if isinstance(policy, RetryPolicy | str):
        return policy
    if isinstance(policy, Mapping):
        return parse_policy(policy, name=str(policy.get("name", INLINE)))
    raise PolicyError(
        f"policy={policy!r}: expected a policy name, a mapping of policy fields or a RetryPolicy"
    )


def policy_from_option(policy: PolicyOption, catalog: Catalog) -> RetryPolicy:
    """A task's ``policy=``: a catalogue name, an inline mapping or a RetryPolicy."""
    checked = policy_before_app(policy)
    return catalog.get(checked) if isinstance(checked, str) else checked


def policy_name_of_task(task_name: str) -> str:
    """The name an unnamed inline policy of ``task_name`` gets: the task's name.

    Celery names are ``module.function`` and are valid policy names as they are;
    any other character (``:``, ``/``, spaces) becomes ``-``.
    """
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", task_name).lstrip("-_.")
    return name or "task"


def _same_rules(one: RetryPolicy, other: RetryPolicy) -> bool:
    """Whether two policies decide alike (their descriptions may differ)."""
    return one.model_copy(update={"description": ""}) == other.model_copy(
        update={"description": ""}
    )


def name_for_task(
    policy: RetryPolicy, task_name: str, catalog: Catalog, *, from_catalog: bool = False
) -> RetryPolicy:
    """``policy`` as task ``task_name`` serves it: named, and not shadowing the catalogue.

    ``from_catalog``: the option was a catalogue name (nothing to check).
    """
    if from_catalog:
        return policy
    if policy.name == INLINE:
        policy = policy.model_copy(update={"name": policy_name_of_task(task_name)})
    if policy.name in catalog and not _same_rules(catalog.get(policy.name), policy):
        raise PolicyError(
            f"{task_name}: its inline policy is named {policy.name!r}, like a different "
            "policy of the catalogue (built-ins and DURABLE_POLICY_FILE); readers such as "
            "retryctl go by the name and could not tell them apart. Give the inline policy "
            "another name, or use policy=" + repr(policy.name) + " for the catalogue's"
        )
    return policy
