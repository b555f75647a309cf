"""Hypothesis strategies for policies, histories and failures, shared by the unit tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from policies import Backoff, Event, EventOverride, Failure, History, RetryPolicy

events = st.sampled_from(list(Event))

# Whole seconds, so that format_duration -> parse_duration gives the same value back.
seconds = st.integers(min_value=0, max_value=30 * 86400).map(float)
windows = st.one_of(st.none(), seconds)
attempt_limits = st.one_of(st.none(), st.integers(min_value=1, max_value=50))
rates = st.one_of(
    st.just("off"),
    st.builds(lambda n, unit: f"{n}/{unit}", st.integers(1, 100_000), st.sampled_from("smh")),
)


@st.composite
def backoffs(draw: st.DrawFn) -> Backoff:
    initial = draw(st.integers(min_value=0, max_value=3600))
    ceiling = draw(st.integers(min_value=max(initial, 1), max_value=7 * 86400))
    return Backoff(
        initial=float(initial),
        factor=draw(st.floats(min_value=1, max_value=10, allow_nan=False)),
        max=float(ceiling),
        jitter=draw(st.sampled_from(["full", "equal", "none"])),
    )


@st.composite
def overrides(draw: st.DrawFn) -> EventOverride:
    fields: dict[str, Any] = {}
    if draw(st.booleans()):
        fields["duration"] = draw(windows)
    if draw(st.booleans()):
        fields["max_attempts"] = draw(attempt_limits)
    if draw(st.booleans()):
        fields["backoff"] = draw(backoffs())
    if draw(st.booleans()):
        fields["max_retry_rate"] = draw(rates)
    return EventOverride(**fields)


class_paths = st.sampled_from(
    ["builtins.ValueError", "builtins.OSError", "builtins.ConnectionError", "myapp.errors.Flaky"]
)


@st.composite
def policies(draw: st.DrawFn) -> RetryPolicy:
    on_events = draw(st.frozensets(events, min_size=1))
    return RetryPolicy(
        name=draw(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)),
        on_events=on_events,
        duration=draw(windows),
        max_attempts=draw(attempt_limits),
        backoff=draw(backoffs()),
        retry_on=tuple(draw(st.lists(class_paths, max_size=2))),
        never_retry=tuple(draw(st.lists(class_paths, max_size=2))),
        events=draw(st.dictionaries(st.sampled_from(sorted(on_events)), overrides(), max_size=2)),
        alert_after=draw(windows),
        max_retrying=draw(attempt_limits),
        retry_queue=draw(st.one_of(st.none(), st.just("retries"))),
        max_retry_rate=draw(rates),
    )


@st.composite
def histories(draw: st.DrawFn, now: float = 10**9) -> History:
    streak = draw(st.integers(min_value=1, max_value=10**6))
    started = draw(st.one_of(st.none(), st.floats(min_value=0, max_value=now)))
    return History(
        attempts=streak + draw(st.integers(min_value=0, max_value=1000)),
        streak_attempts=streak,
        streak_started_at=started,
        event_failures=draw(st.dictionaries(events, st.integers(min_value=0, max_value=10**6))),
        event_started_at=draw(st.dictionaries(events, st.floats(min_value=0, max_value=now))),
    )


@st.composite
def failures(draw: st.DrawFn, event: Event | None = None) -> Failure:
    error_type = draw(class_paths)
    return Failure(
        event=draw(events) if event is None else event,
        error_type=error_type,
        error_mro=(error_type, "builtins.Exception", "builtins.BaseException", "builtins.object"),
        message=draw(st.text(max_size=300)),
        retry_after=draw(st.one_of(st.none(), st.floats(min_value=0, max_value=10**6))),
    )
