"""Durations: what parse_duration accepts, what it refuses, and format_duration's round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("90m", 5400.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        ("1w", 604800.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        (" 40s ", 40.0),
        (0, 0.0),
        (30, 30.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration_reads_units_and_plain_seconds(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_parse_duration_reads_off_as_none() -> None:
    assert parse_duration("off") is None


@pytest.mark.parametrize(
    "bad", ["forevr", "-5m", "1.5.h", "", "  ", "90", "1h1h", "30m1h", "5x", -1, float("inf"), True]
)
def test_parse_duration_refuses_with_value_and_accepted_forms(bad: object) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(bad)
    message = str(caught.value)
    assert repr(bad) in message
    assert "30s, 90m, 2h, 7d, 1w, 1h30m, or off" in message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "off"), (0, "0s"), (0.25, "250ms"), (40, "40s"), (1.5, "1.5s"), (5400, "1h30m"),
     (3612, "1h12s"), (694800, "1w1d1h")],
)
def test_format_duration_writes_the_compact_form(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_duration_refuses_negative_seconds() -> None:
    with pytest.raises(ValueError, match="-1"):
        format_duration(-1)


@given(st.integers(min_value=0, max_value=10**9))
def test_whole_seconds_survive_format_then_parse(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
