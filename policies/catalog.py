"""Named policies: the built-ins, and the operator's policy file on top.

A policy file is YAML with one top-level key::

    policies:
      flaky-api:
        duration: 2h
        retry_on: [ConnectionError, myapp.errors.Flaky]

A file may add policies or replace a built-in of the same name. Every problem
in a file is collected and raised as one :class:`PolicyError`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any

from pydantic import ValidationError

from policies.errors import PolicyError, UnknownPolicyError, problems_from_validation, where
from policies.model import NAME_ACCEPTED, NAME_RE, RetryPolicy

BUILTIN = "builtin"
"""The source of the policies shipped with the package."""

_TOP_LEVEL_KEYS = ("policies",)


def parse_policy(
    data: Mapping[str, Any] | RetryPolicy,
    name: str = "inline",
    source: str | None = None,
) -> RetryPolicy:
    """Build a policy from a mapping of fields (as written in YAML), or take one as is.

    ``name`` names the policy (the catalogue key); ``source`` names the file it
    came from, for error messages. Raises :class:`PolicyError` on any problem.
    """
    if isinstance(data, RetryPolicy):
        if name in ("inline", data.name):
            return data
        if not NAME_RE.match(name):
            raise PolicyError(where(source, name, "name") + f"got {name!r}; {NAME_ACCEPTED}")
        return data.model_copy(update={"name": name})
    if not isinstance(data, Mapping):
        raise PolicyError(
            where(source, name) + f"expected a mapping of fields, got {_kind(data)} {data!r}"
        )
    fields = dict(data)
    if "name" in fields and fields["name"] != name:
        raise PolicyError(
            where(source, name, "name")
            + f"{fields['name']!r} differs from the policy's key {name!r}; drop the name field"
        )
    fields["name"] = name
    try:
        return RetryPolicy.model_validate(fields)
    except ValidationError as error:
        raise PolicyError(problems_from_validation(error, source, name)) from None


def _kind(value: object) -> str:
    return {list: "a list", str: "text", type(None): "nothing"}.get(type(value), "a value")


class Catalog:
    """The policies a deployment knows, by name, and where each came from."""

    def __init__(self, policies: Mapping[str, RetryPolicy], sources: Mapping[str, str]) -> None:
        self._policies = dict(policies)
        self._sources = dict(sources)

    def get(self, name: str) -> RetryPolicy:
        """The policy with this name; :class:`UnknownPolicyError` lists the names there are."""
        try:
            return self._policies[name]
        except KeyError:
            raise UnknownPolicyError(name, self._policies) from None

    def names(self) -> list[str]:
        """Every policy name, sorted."""
        return sorted(self._policies)

    def source(self, name: str) -> str:
        """Where the policy came from: ``"builtin"`` or the path of the policy file."""
        self.get(name)
        return self._sources[name]

    def __contains__(self, name: object) -> bool:
        return name in self._policies

    def __iter__(self) -> Iterator[RetryPolicy]:
        return iter(self._policies[name] for name in self.names())

    def __len__(self) -> int:
        return len(self._policies)


def _read_yaml(text: str, source: str) -> object:
    import yaml  # here, not at the top: most retryctl commands parse no YAML (~50 ms)

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise PolicyError(f"{source}: {at}not valid YAML: {problem}") from None


def parse_policy_file(text: str, source: str) -> dict[str, RetryPolicy]:
    """Read the policies of one YAML document. Every problem is collected into one error."""
    document = _read_yaml(text, source)
    if document is None:
        raise PolicyError(
            f"{source}: the file is empty; expected `policies:` mapping names to policies"
        )
    if not isinstance(document, Mapping):
        raise PolicyError(
            f"{source}: expected a mapping with a `policies:` key, got {_kind(document)}"
        )
    problems: list[str] = []
    for key in document:
        if key not in _TOP_LEVEL_KEYS:
            close = difflib.get_close_matches(str(key), _TOP_LEVEL_KEYS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{source}: unknown top-level key {key!r}{hint}; expected `policies:`")
    entries = document.get("policies") or {}
    if not isinstance(entries, Mapping):
        problems.append(
            f"{source}: policies: expected a mapping of name to policy, got {_kind(entries)}"
        )
        entries = {}
    policies: dict[str, RetryPolicy] = {}
    for name, body in entries.items():
        if not isinstance(name, str):
            problems.append(f"{source}: policy name {name!r} must be text")
            continue
        try:
            policies[name] = parse_policy(body, name=name, source=source)
        except PolicyError as error:
            problems.extend(error.problems)
    if problems:
        raise PolicyError(problems)
    return policies


def builtin_policies() -> dict[str, RetryPolicy]:
    """The policies shipped with the package (``policies/builtin.yaml``)."""
    text = resources.files("policies").joinpath("builtin.yaml").read_text(encoding="utf-8")
    return parse_policy_file(text, "builtin.yaml")


def load_catalog(path: str | None = None) -> Catalog:
    """The built-in policies, then those of the policy file at ``path`` (if any) on top."""
    policies = builtin_policies()
    sources = dict.fromkeys(policies, BUILTIN)
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as error:
            reason = error.strerror or str(error)
            raise PolicyError(f"{path}: cannot read the policy file: {reason}") from None
        except UnicodeDecodeError as error:
            raise PolicyError(f"{path}: not a UTF-8 text file ({error.reason})") from None
        from_file = parse_policy_file(text, path)
        policies.update(from_file)
        sources.update(dict.fromkeys(from_file, path))
    return Catalog(policies, sources)
