"""A task's ``policy=`` option, made into one named :class:`policies.RetryPolicy`.

A job records its policy by name, and every reader (retryctl, the metrics,
Flower's text, ``list --policy``) goes by that name. So an inline policy, a
mapping or a ``RetryPolicy`` given on the task, is never left with the
model's placeholder name ``inline``: it is named after its task
(``myapp.jobs.sync_account``) unless it names itself (``{"name": "partner-api",
...}``), and a name that the catalogue already uses for another policy is
refused, because readers could not tell the two apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from policies import Catalog, PolicyError, RetryPolicy, parse_policy

INLINE = "inline"
"""The name a policy has until something names it (``RetryPolicy.name``'s default)."""

PolicyOption = str | Mapping[str, Any] | RetryPolicy


def policy_from_option(policy: PolicyOption, catalog: Catalog) -> RetryPolicy:
    """A task's ``policy=``: a catalogue name, an inline mapping or a RetryPolicy.

    Checked now (a bad one fails at import); an inline policy without a name
    of its own is still called ``inline`` here: :func:`name_for_task` names it
    once the task's name is known.
    """
    if isinstance(policy, RetryPolicy):
        return policy
    if isinstance(policy, str):
        return catalog.get(policy)
    if isinstance(policy, Mapping):
        return parse_policy(policy, name=str(policy.get("name", INLINE)))
    raise PolicyError(
        f"policy={policy!r}: expected a policy name, a mapping of policy fields or a RetryPolicy"
    )


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
