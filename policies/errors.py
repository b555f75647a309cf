"""Errors that say what is wrong with a policy, where, and what would be accepted.

Pydantic's own report is several lines per problem and names its internal
types; operators read ours instead: one line per problem, naming the file (when
known), the policy, the field, the value and what is accepted.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ValidationError

from policies.model import Backoff, EventOverride, RetryPolicy


class PolicyError(ValueError):
    """A policy or policy file is wrong. ``problems`` holds one line per problem."""

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems: tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        super().__init__("\n".join(self.problems))


class UnknownPolicyError(PolicyError):
    """No policy has this name. The message lists the names there are."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known: tuple[str, ...] = tuple(sorted(known))
        close = difflib.get_close_matches(name, self.known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        listed = ", ".join(self.known) or "(none)"
        super().__init__(f"unknown policy {name!r}; known policies: {listed}{hint}")


def where(source: str | None, policy: str | None, field: str = "") -> str:
    """The prefix naming the place of a problem: "file.yaml: policy 'x': backoff.max: "."""
    parts = []
    if source:
        parts.append(source)
    if policy:
        parts.append(f"policy {policy!r}")
    if field:
        parts.append(field)
    return "".join(f"{part}: " for part in parts)


# Names people bring from Celery, tenacity or dramatiq, and the field that does the job here.
_ALIASES = {
    "max_retries": "max_attempts",
    "retries": "max_attempts",
    "attempts": "max_attempts",
    "stop_after_attempt": "max_attempts",
    "window": "duration",
    "max_duration": "duration",
    "stop_after_delay": "duration",
    "retry_for": "retry_on",
    "autoretry_for": "retry_on",
    "dont_autoretry_for": "never_retry",
    "throws": "never_retry",
    "queue": "retry_queue",
}


def did_you_mean(unknown: str, known: Sequence[str]) -> str | None:
    """The known field closest to a misspelt one, counting well-known names from other tools."""
    candidates = list(known) + [alias for alias, field in _ALIASES.items() if field in known]
    close = difflib.get_close_matches(unknown, candidates, n=1)
    if not close:
        return None
    return _ALIASES.get(close[0], close[0])


def _model_at(path: Sequence[object]) -> type[BaseModel]:
    """Which model a location inside a policy belongs to (for its list of fields)."""
    model: type[BaseModel] = RetryPolicy
    steps = list(path)
    while steps:
        step = str(steps.pop(0))
        if step == "backoff":
            model = Backoff
        elif step == "events" and model is RetryPolicy and steps:
            steps.pop(0)  # the event name
            model = EventOverride
    return model


def problems_from_validation(
    error: ValidationError, source: str | None, policy: str | None
) -> list[str]:
    """Turn pydantic's report into our one-line problems."""
    problems = []
    for item in error.errors():
        loc = item["loc"]
        kind = item["type"]
        if kind == "extra_forbidden":
            unknown = str(loc[-1])
            known = list(_model_at(loc[:-1]).model_fields)
            if policy is not None and "name" in known and not loc[:-1]:
                known.remove("name")  # the name comes from the catalogue key
            close = did_you_mean(unknown, known)
            hint = f" (did you mean {close}?)" if close else ""
            field = ".".join(str(part) for part in loc[:-1])
            message = f"unknown field {unknown!r}{hint}; known fields: {', '.join(known)}"
        else:
            field = ".".join(str(part) for part in loc)
            if kind == "value_error" and "error" in item.get("ctx", {}):
                message = str(item["ctx"]["error"])
            else:
                text = item["msg"]
                message = f"got {item['input']!r}; {text[:1].lower()}{text[1:]}"
        problems.append(where(source, policy, field) + message)
    return problems
