"""The catalogue: built-ins, the operator's policy file on top, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import BUILTIN, Event, PolicyError, UnknownPolicyError, load_catalog


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policies.yaml"
    path.write_text(text)
    return str(path)


def test_builtins_are_default_forever_and_capacity() -> None:
    catalog = load_catalog()
    assert catalog.names() == ["capacity", "default", "forever"]
    assert all(catalog.source(name) == BUILTIN for name in catalog.names())


def test_builtin_default_has_the_one_hour_window() -> None:
    assert load_catalog().get("default").duration == 3600


def test_builtin_forever_has_no_window_and_no_attempt_limit() -> None:
    forever = load_catalog().get("forever")
    assert forever.duration is None
    assert forever.max_attempts is None


def test_builtin_capacity_waits_for_capacity_without_limit() -> None:
    capacity = load_catalog().get("capacity")
    no_capacity = capacity.override(Event.NO_CAPACITY)
    assert no_capacity.sets("duration") and no_capacity.duration is None
    assert no_capacity.backoff is not None
    assert (no_capacity.backoff.initial, no_capacity.backoff.max) == (30, 300)
    assert capacity.override(Event.ERROR).duration == 600


def test_file_adds_policies_and_replaces_builtins(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policies:\n  flaky-api:\n    duration: 2h\n  forever:\n    duration: off\n"
        "    max_retrying: 50\n",
    )
    catalog = load_catalog(path)
    assert catalog.get("flaky-api").duration == 7200
    assert catalog.get("forever").max_retrying == 50
    assert catalog.source("forever") == path
    assert catalog.source("default") == BUILTIN
    assert "flaky-api" in catalog


def test_yaml_off_in_a_file_means_off(tmp_path: Path) -> None:
    path = write(tmp_path, "policies:\n  p:\n    duration: off\n    max_attempts: off\n")
    policy = load_catalog(path).get("p")
    assert (policy.duration, policy.max_attempts) == (None, None)


def test_unknown_policy_lists_the_known_names_and_suggests_one() -> None:
    with pytest.raises(UnknownPolicyError) as caught:
        load_catalog().get("forevr")
    assert str(caught.value) == (
        "unknown policy 'forevr'; known policies: capacity, default, forever; "
        "did you mean forever?"
    )


def test_every_problem_in_a_file_is_reported_with_file_and_policy(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "policies:\n  a:\n    duration: forevr\n  b:\n    max_retires: 3\n",
    )
    with pytest.raises(PolicyError) as caught:
        load_catalog(path)
    assert caught.value.problems == (
        f"{path}: policy 'a': duration: 'forevr' is not a duration; accepted: "
        "a duration like 30s, 90m, 2h, 7d, 1w, 1h30m, or off",
        f"{path}: policy 'b': unknown field 'max_retires' (did you mean max_attempts?); "
        "known fields: description, on_events, duration, max_attempts, backoff, retry_on, "
        "never_retry, events, alert_after, max_retrying, retry_queue, max_retry_rate",
    )


def test_malformed_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "policies:\n  a:\n    duration: [1h\n  b: {}\n")
    with pytest.raises(PolicyError) as caught:
        load_catalog(path)
    assert str(caught.value).startswith(f"{path}: line 4")
    assert "not valid YAML" in str(caught.value)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(PolicyError, match=r"nope\.yaml: cannot read the policy file"):
        load_catalog(missing)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="the file is empty"):
        load_catalog(write(tmp_path, ""))


def test_unknown_top_level_key_suggests_policies(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"unknown top-level key 'policy' \(did you mean"):
        load_catalog(write(tmp_path, "policy:\n  a: {}\n"))


def test_policy_body_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="policy 'a': expected a mapping of fields, got text"):
        load_catalog(write(tmp_path, "policies:\n  a: forever\n"))
