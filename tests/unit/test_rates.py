"""max_retry_rate: what parse_rate reads and refuses, its round trip, the budget a retry uses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import Event, PolicyError, parse_policy
from policies.rates import MAX_RATE, MIN_RATE, format_rate, parse_rate
from policies.simulate import budget_note


@pytest.mark.parametrize(
    ("text", "per_second"),
    [
        ("50/s", 50.0),
        ("600/m", 10.0),
        ("10/m", 10 / 60),
        ("1/h", 1 / 3600),
        ("1.5/h", 1.5 / 3600),
        (" 2 / s ", 2.0),
        ("7/M", 7 / 60),
        ("1000000/s", MAX_RATE),
    ],
)
def test_parse_rate_reads_a_count_per_second_minute_or_hour(text: str, per_second: float) -> None:
    assert parse_rate(text) == per_second


@pytest.mark.parametrize("off", ["off", " OFF ", None, False])
def test_off_and_absent_mean_no_budget(off: object) -> None:
    assert parse_rate(off) is None


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (10, "say per what"),
        (2.5, "say per what"),
        (True, "is not a rate;"),
        ("10", "is not a rate;"),
        ("fast", "is not a rate;"),
        ("10/d", "is not a rate;"),
        ("-1/s", "is not a rate;"),
        ("0/s", "at least 1/h"),
        ("0.5/h", "at least 1/h"),
        ("2000000/s", "at most 1000000/s"),
        ("1e3/s", "is not a rate;"),
        ("10/s/s", "is not a rate;"),
        ([], "is not a rate;"),
    ],
)
def test_parse_rate_refuses_naming_the_value_and_what_is_accepted(bad: object, why: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_rate(bad)
    message = str(caught.value)
    assert message.startswith(f"{bad!r} is not a rate")
    assert why in message
    assert "accepted: a rate like 50/s, 600/m or 100/h" in message


@given(st.floats(min_value=MIN_RATE, max_value=MAX_RATE, allow_nan=False))
def test_format_rate_reads_back_exactly(rate: float) -> None:
    assert parse_rate(format_rate(rate)) == rate


@given(st.integers(1, 100_000), st.sampled_from(["s", "m", "h"]))
def test_a_whole_count_is_written_in_a_whole_unit(count: int, unit: str) -> None:
    text = format_rate(parse_rate(f"{count}/{unit}"))
    number, _, written = text.partition("/")
    assert number.isdigit() and written in "smh"


def test_the_field_is_validated_in_a_policy_and_in_an_event_override() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(
            {"max_retry_rate": 50, "events": {"error": {"max_retry_rate": "lots"}}},
            name="flaky", source="ops.yaml",
        )  # fmt: skip
    problems = sorted(caught.value.problems)
    assert problems[0].startswith(
        "ops.yaml: policy 'flaky': events.error.max_retry_rate: 'lots' is not a rate"
    )
    assert problems[1].startswith(
        "ops.yaml: policy 'flaky': max_retry_rate: 50 is not a rate (say per what"
    )


def test_a_misspelt_option_is_refused_with_the_field_it_meant() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy({"events": {"error": {"max_retry_rat": "1/s"}}}, name="flaky")
    assert "unknown field 'max_retry_rat' (did you mean max_retry_rate?)" in str(caught.value)


def test_no_rate_means_no_budget_at_all() -> None:
    policy = parse_policy({"duration": "off"}, name="plain")
    assert policy.max_retry_rate is None and not policy.has_retry_budget
    assert all(policy.retry_budget(event) is None for event in Event)
    assert policy.effective()["max_retry_rate"] == "off"
    assert budget_note(policy, Event.ERROR) is None


def test_retries_share_the_policy_budget_unless_their_event_sets_its_own() -> None:
    policy = parse_policy(
        {
            "max_retry_rate": "600/m",
            "events": {
                "no-capacity": {"max_retry_rate": "1/s"},
                "timeout": {"max_retry_rate": "off"},
                "error": {"max_attempts": 3},
            },
        },
        name="partner",
    )
    assert policy.has_retry_budget
    shared = policy.retry_budget(Event.ERROR)
    assert shared is not None and (shared.name, shared.rate) == ("partner", 10.0)
    assert policy.retry_budget(Event.INTERRUPTION) == shared
    assert policy.retry_budget(None) == shared
    own = policy.retry_budget(Event.NO_CAPACITY)
    assert own is not None and (own.name, own.rate, own.interval_ms) == (
        "partner:no-capacity", 1.0, 1000.0,
    )  # fmt: skip
    assert policy.retry_budget(Event.TIMEOUT) is None
    assert policy.effective()["max_retry_rate"] == "10/s"
    assert policy.effective()["events"]["no-capacity"] == {"max_retry_rate": "1/s"}
    assert policy.effective()["events"]["timeout"] == {"max_retry_rate": "off"}
    assert parse_policy(policy.effective(), name="partner") == policy


def test_a_budget_only_on_an_event_is_a_budget() -> None:
    policy = parse_policy({"events": {"no-capacity": {"max_retry_rate": "5/s"}}}, name="p")
    assert policy.has_retry_budget
    assert policy.retry_budget(Event.ERROR) is None


def test_simulate_says_the_cap_is_fleet_wide() -> None:
    policy = parse_policy({"max_retry_rate": "10/s"}, name="partner")
    note = budget_note(policy, Event.ERROR)
    assert note is not None
    assert note.startswith("retries are capped at 10/s fleet-wide (max_retry_rate")
    assert "without counting an attempt" in note
