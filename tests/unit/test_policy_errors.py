"""Every bad policy input gives a PolicyError naming the field, the value and what is accepted."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import PolicyError, RetryPolicy, parse_policy


def problem(data: Any, name: str = "flaky", source: str | None = "ops.yaml") -> str:
    with pytest.raises(PolicyError) as caught:
        parse_policy(data, name=name, source=source)
    return str(caught.value)


def test_unknown_duration_word_names_field_value_and_accepted_forms() -> None:
    message = problem({"duration": "forevr"})
    assert message.startswith("ops.yaml: policy 'flaky': duration: 'forevr'")
    assert "30s, 90m, 2h, 7d, 1w, 1h30m, or off" in message


@pytest.mark.parametrize("bad", ["-5m", "1.5.h"])
def test_malformed_duration_names_field_and_value(bad: str) -> None:
    message = problem({"duration": bad})
    assert f"duration: {bad!r}" in message


@pytest.mark.parametrize("bad", [0, -1])
def test_max_attempts_below_one_is_refused(bad: int) -> None:
    message = problem({"max_attempts": bad})
    assert f"max_attempts: got {bad}" in message
    assert ">= 1, or off" in message


def test_max_attempts_true_is_refused_not_taken_as_one() -> None:
    assert "max_attempts: got True" in problem({"max_attempts": True})


def test_backoff_factor_below_one_is_refused() -> None:
    message = problem({"backoff": {"factor": 0.5}})
    assert "backoff.factor: got 0.5" in message
    assert ">= 1" in message


def test_backoff_max_off_is_refused_with_the_reason() -> None:
    message = problem({"backoff": {"max": "off"}})
    assert "backoff.max: 'off'" in message
    assert "unbounded retries need a ceiling" in message


def test_backoff_initial_above_max_is_refused() -> None:
    message = problem({"backoff": {"initial": "1h", "max": "10m"}})
    assert "backoff: initial 1h is above max 10m" in message


def test_misspelt_max_retries_suggests_max_attempts() -> None:
    message = problem({"max_retires": 3})
    assert "unknown field 'max_retires'" in message
    assert "did you mean max_attempts?" in message


def test_unknown_field_inside_backoff_lists_backoff_fields() -> None:
    message = problem({"backoff": {"ceiling": "5m"}})
    assert "backoff: unknown field 'ceiling'" in message
    assert "known fields: initial, factor, max, jitter" in message


def test_unknown_event_in_on_events_lists_the_four_events() -> None:
    message = problem({"on_events": ["error", "timeuot"]})
    assert "on_events: unknown event 'timeuot' (did you mean timeout?)" in message
    assert "error, no-capacity, interruption, timeout" in message


def test_unknown_event_in_overrides_lists_the_four_events() -> None:
    message = problem({"events": {"no_capacity": {"duration": "off"}}})
    assert "events: unknown event 'no_capacity' (did you mean no-capacity?)" in message
    assert "error, no-capacity, interruption, timeout" in message


def test_bad_value_inside_an_override_names_the_nested_field() -> None:
    message = problem({"events": {"timeout": {"max_attempts": 0}}})
    assert "events.timeout.max_attempts: got 0" in message


def test_override_for_an_event_the_policy_does_not_retry_is_refused() -> None:
    message = problem({"on_events": ["error"], "events": {"timeout": {"duration": "5m"}}})
    assert "timeout has overrides but is not in on_events" in message


def test_empty_on_events_is_refused() -> None:
    assert "on_events: an empty list retries nothing" in problem({"on_events": []})


def test_bad_exception_path_in_retry_on_is_refused() -> None:
    message = problem({"retry_on": ["my app.Error"]})
    assert "retry_on: 'my app.Error' is not an exception class" in message


def test_jitter_outside_the_three_kinds_is_refused() -> None:
    assert "backoff.jitter: got 'random'; accepted: full, equal or none" in problem(
        {"backoff": {"jitter": "random"}}
    )


def test_every_problem_is_reported_one_per_line() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy({"duration": "forevr", "max_attempts": 0}, name="flaky")
    assert len(caught.value.problems) == 2
    assert str(caught.value).count("\n") == 1


def test_a_policy_that_is_not_a_mapping_is_refused() -> None:
    assert "expected a mapping of fields, got a list" in problem(["duration", "1h"])


def test_name_field_that_differs_from_the_key_is_refused() -> None:
    assert "'other' differs from the policy's key 'flaky'" in problem({"name": "other"})


def test_policy_name_with_spaces_is_refused() -> None:
    assert "name: got 'my policy'" in problem({}, name="my policy")


def test_yaml_off_read_as_false_means_off() -> None:
    policy = parse_policy({"duration": False, "max_attempts": False})
    assert policy.duration is None
    assert policy.max_attempts is None


def test_defaults_are_one_hour_window_and_no_attempt_limit() -> None:
    policy = parse_policy({})
    assert policy.duration == 3600
    assert policy.max_attempts is None
    assert policy.backoff.initial == 1 and policy.backoff.factor == 2
    assert policy.backoff.max == 600 and policy.backoff.jitter == "full"


def test_bare_exception_names_mean_builtins() -> None:
    policy = parse_policy({"retry_on": ["ConnectionError", "myapp.Flaky"]})
    assert policy.retry_on == ("builtins.ConnectionError", "myapp.Flaky")


def test_policy_model_is_frozen() -> None:
    policy = parse_policy({})
    with pytest.raises(ValueError, match="frozen"):
        policy.duration = None  # type: ignore[misc]


def test_effective_values_parse_back_to_the_same_policy() -> None:
    policy = parse_policy(
        {
            "duration": "2h",
            "max_attempts": 9,
            "on_events": ["error", "no-capacity"],
            "events": {"no-capacity": {"duration": "off", "backoff": {"initial": "30s"}}},
            "alert_after": "1d",
        },
        name="flaky",
    )
    again = parse_policy(policy.effective(), name="flaky")
    assert again == policy
    assert again.effective() == policy.effective()


# Values of every kind YAML can produce, and some Python-only ones, in any field.
yaml_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**20), max_value=10**20),
        st.floats(),
        st.text(max_size=12),
        st.sampled_from(["off", "1h", "30s", "error", "no-capacity", "full", "ValueError", "0"]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(
            ["initial", "factor", "max", "jitter", "duration", "max_attempts", "backoff"]
        )), children, max_size=4),
    ),
    max_leaves=12,
)
policy_keys = st.one_of(
    st.sampled_from([*RetryPolicy.model_fields, "max_retires", "error", "timeout"]),
    st.text(max_size=10),
)


@settings(max_examples=400)
@given(st.dictionaries(policy_keys, yaml_values, max_size=6))
def test_any_mapping_either_parses_or_raises_policy_error(data: dict[str, Any]) -> None:
    try:
        policy = parse_policy(data, name="random")
    except PolicyError as error:
        assert error.problems
        assert all(line.strip() for line in error.problems)
    else:
        assert isinstance(policy, RetryPolicy)


@settings(max_examples=200)
@given(
    st.dictionaries(
        st.sampled_from(["duration", "max_attempts", "backoff", "on_events", "events"]),
        st.dictionaries(st.sampled_from(["no-capacity", "error", "bogus", "initial", "max"]),
                        yaml_values, max_size=3),
        max_size=3,
    )
)
def test_any_nested_mapping_either_parses_or_raises_policy_error(data: dict[str, Any]) -> None:
    try:
        parse_policy(data, name="random")
    except PolicyError as error:
        assert error.problems
