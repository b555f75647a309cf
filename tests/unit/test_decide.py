"""decide(): which limit applies to a failure, and what the operator reads about it."""

from __future__ import annotations

import ast
import random
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_strategies import failures, histories, policies

import policies as policies_package
from policies import (
    Event,
    Failure,
    GiveUp,
    History,
    Retry,
    RetryPolicy,
    decide,
    parse_policy,
    simulate,
)

CONNECTION_ERROR = Failure(
    event=Event.ERROR,
    error_type="builtins.ConnectionRefusedError",
    error_mro=(
        "builtins.ConnectionRefusedError",
        "builtins.ConnectionError",
        "builtins.OSError",
        "builtins.Exception",
        "builtins.BaseException",
        "builtins.object",
    ),
    message="refused",
)
FIRST = History(attempts=1, streak_attempts=1)


def rng() -> random.Random:
    return random.Random(7)


def steady(**fields: object) -> RetryPolicy:
    """A policy without jitter, so delays are exact."""
    backoff = fields.pop("backoff", {})
    assert isinstance(backoff, dict)
    return parse_policy({**fields, "backoff": {"jitter": "none", **backoff}})


def failure(event: Event, **fields: object) -> Failure:
    return Failure.model_validate({"event": event, "error_type": "workers.NoCapacity", **fields})


def test_first_failure_retries_after_the_initial_delay() -> None:
    decision = decide(steady(), FIRST, CONNECTION_ERROR, now=1000, rng=rng())
    assert decision == Retry(
        1.0,
        "attempt 1 of unlimited failed with ConnectionRefusedError: refused; "
        "retry window 1h (0s used); next attempt in 1s",
    )


def test_event_the_policy_does_not_handle_gives_up() -> None:
    policy = steady(on_events=["error"])
    decision = decide(policy, FIRST, failure(Event.TIMEOUT), now=0, rng=rng())
    assert isinstance(decision, GiveUp)
    assert decision.limit == "event"
    assert "does not retry on timeout" in decision.reason


def test_never_retry_matches_a_subclass_through_the_mro() -> None:
    decision = decide(steady(never_retry=["OSError"]), FIRST, CONNECTION_ERROR, 0, rng())
    assert isinstance(decision, GiveUp)
    assert decision.limit == "never_retry"
    assert "builtins.OSError is in never_retry" in decision.reason


def test_retry_on_matches_a_subclass_through_the_mro() -> None:
    decision = decide(steady(retry_on=["ConnectionError"]), FIRST, CONNECTION_ERROR, 0, rng())
    assert isinstance(decision, Retry)


def test_error_outside_retry_on_gives_up() -> None:
    decision = decide(steady(retry_on=["myapp.Flaky"]), FIRST, CONNECTION_ERROR, 0, rng())
    assert isinstance(decision, GiveUp)
    assert decision.limit == "not_retry_on"
    assert "ConnectionRefusedError is not in retry_on (myapp.Flaky)" in decision.reason


def test_retry_on_does_not_narrow_other_events() -> None:
    policy = steady(retry_on=["myapp.Flaky"], never_retry=["workers.NoCapacity"])
    decision = decide(policy, FIRST, failure(Event.NO_CAPACITY), 0, rng())
    assert isinstance(decision, Retry)


def test_max_attempts_gives_up_when_the_streak_reaches_it() -> None:
    policy = steady(max_attempts=3)
    third = History(attempts=3, streak_attempts=3, streak_started_at=0)
    decision = decide(policy, third, CONNECTION_ERROR, 10, rng())
    assert decision == GiveUp(
        "attempt 3 of 3 failed with ConnectionRefusedError: refused; "
        "gave up: max_attempts 3 reached",
        "max_attempts",
    )


def test_max_attempts_counts_the_streak_not_all_attempts() -> None:
    policy = steady(max_attempts=3)
    after_checkpoint = History(attempts=9, streak_attempts=2, streak_started_at=0)
    decision = decide(policy, after_checkpoint, CONNECTION_ERROR, 10, rng())
    assert isinstance(decision, Retry)
    assert "attempt 2 of 3 in this streak (9 in all)" in decision.reason


def test_window_used_up_gives_up_naming_how_long_it_failed() -> None:
    history = History(attempts=30, streak_attempts=30, streak_started_at=0)
    decision = decide(steady(duration="1h"), history, CONNECTION_ERROR, 3612, rng())
    assert isinstance(decision, GiveUp)
    assert decision.limit == "duration"
    assert decision.reason.endswith("gave up: retry window 1h used up (failing for 1h12s)")


def test_no_retry_is_scheduled_beyond_the_window() -> None:
    history = History(attempts=5, streak_attempts=5, streak_started_at=0)
    # Delay before retry 5 is 16s; only 10s of the window are left.
    decision = decide(steady(duration="1h"), history, CONNECTION_ERROR, 3590, rng())
    assert isinstance(decision, GiveUp)
    assert "ends before the next attempt in 16s" in decision.reason


def test_window_counts_from_the_first_failure_of_the_streak() -> None:
    history = History(attempts=5, streak_attempts=5, streak_started_at=1000)
    decision = decide(steady(duration="1h"), history, CONNECTION_ERROR, 1000 + 3000, rng())
    assert isinstance(decision, Retry)
    assert "retry window 1h (50m used)" in decision.reason


def test_override_window_counts_from_the_events_first_failure() -> None:
    policy = steady(duration="1h", events={"no-capacity": {"duration": "10m"}})
    # The policy window (1h from the streak's start at 0) is long gone; the override's is not.
    history = History(
        attempts=4,
        streak_attempts=4,
        streak_started_at=0,
        event_failures={Event.NO_CAPACITY: 3},
        event_started_at={Event.NO_CAPACITY: 7000},
    )
    decision = decide(policy, history, failure(Event.NO_CAPACITY), 7000 + 300, rng())
    assert isinstance(decision, Retry)
    assert "no-capacity window 10m (5m used)" in decision.reason


def test_override_window_off_lifts_the_policy_window_for_that_event() -> None:
    policy = steady(duration="1h", events={"no-capacity": {"duration": "off"}})
    history = History(attempts=500, streak_attempts=500, streak_started_at=0)
    decision = decide(policy, history, failure(Event.NO_CAPACITY), 10 * 86400, rng())
    assert isinstance(decision, Retry)
    assert "no-capacity window off" in decision.reason


def test_override_max_attempts_counts_failures_of_that_event_only() -> None:
    policy = steady(duration="off", events={"timeout": {"max_attempts": 2}})
    one_timeout_before = History(
        attempts=20, streak_attempts=20, event_failures={Event.TIMEOUT: 1}
    )
    decision = decide(policy, one_timeout_before, failure(Event.TIMEOUT), 0, rng())
    assert isinstance(decision, GiveUp)
    assert decision.limit == "max_attempts"
    assert "attempt 20 (timeout failure 2 of 2)" in decision.reason


def test_override_backoff_counts_the_events_failures() -> None:
    policy = steady(events={"no-capacity": {"backoff": {"initial": "30s", "max": "5m",
                                                        "jitter": "none"}}})
    history = History(
        attempts=12, streak_attempts=12, streak_started_at=0,
        event_failures={Event.NO_CAPACITY: 1}, event_started_at={Event.NO_CAPACITY: 0},
    )
    decision = decide(policy, history, failure(Event.NO_CAPACITY), 100, rng())
    assert decision == Retry(60.0, decision.reason)


def test_retry_after_hint_replaces_the_computed_delay() -> None:
    decision = decide(steady(), FIRST, failure(Event.NO_CAPACITY, retry_after=42), 0, rng())
    assert isinstance(decision, Retry)
    assert decision.delay == 42
    assert "next attempt in 42s (the job's retry_after)" in decision.reason


def test_retry_after_hint_wins_over_the_backoff_max() -> None:
    hinted = failure(Event.NO_CAPACITY, retry_after=7200)
    decision = decide(steady(duration="off"), FIRST, hinted, 0, rng())
    assert isinstance(decision, Retry)
    assert decision.delay == 7200
    assert "next attempt in 2h (the job's retry_after, above backoff max 10m)" in decision.reason


def test_retry_after_hint_is_not_jittered() -> None:
    jittered = parse_policy({"backoff": {"jitter": "full", "initial": "1m"}})
    hinted = failure(Event.NO_CAPACITY, retry_after=30)
    assert all(decide(jittered, FIRST, hinted, 0, random.Random(seed)).delay == 30
               for seed in range(20))  # fmt: skip


def test_retry_after_hint_of_an_error_is_the_delay_too() -> None:
    hinted = CONNECTION_ERROR.model_copy(update={"retry_after": 90.0})
    decision = decide(steady(backoff={"max": "1m"}), FIRST, hinted, 0, rng())
    assert decision == Retry(90.0, decision.reason)


def test_retry_after_hint_past_the_window_gives_up_on_duration() -> None:
    history = History(attempts=2, streak_attempts=2, streak_started_at=0)
    hinted = failure(Event.NO_CAPACITY, retry_after=120)
    decision = decide(steady(duration="10m"), history, hinted, 500, rng())
    assert decision == GiveUp(
        "attempt 2 of unlimited failed (no-capacity) with NoCapacity; gave up: retry window "
        "10m (duration) ends before the job's retry_after of 2m (failing for 8m20s)",
        "duration",
    )


def test_retry_after_hint_past_an_event_window_names_the_events_duration() -> None:
    policy = steady(duration="off", events={"no-capacity": {"duration": "1m"}})
    hinted = failure(Event.NO_CAPACITY, retry_after=61)
    decision = decide(policy, FIRST, hinted, 0, rng())
    assert isinstance(decision, GiveUp)
    assert decision.limit == "duration"
    assert "no-capacity window 1m (events.no-capacity.duration) ends before" in decision.reason


def test_retry_after_hint_that_just_fits_the_window_retries() -> None:
    history = History(attempts=2, streak_attempts=2, streak_started_at=0)
    hinted = failure(Event.NO_CAPACITY, retry_after=100)
    decision = decide(steady(duration="10m"), history, hinted, 500, rng())
    assert decision == Retry(100.0, decision.reason)


def test_retry_after_hint_does_not_lift_max_attempts() -> None:
    third = History(attempts=3, streak_attempts=3, streak_started_at=0)
    hinted = failure(Event.NO_CAPACITY, retry_after=5)
    decision = decide(steady(max_attempts=3), third, hinted, 10, rng())
    assert isinstance(decision, GiveUp)
    assert decision.limit == "max_attempts"


def test_long_error_messages_are_cut_in_the_reason() -> None:
    noisy = CONNECTION_ERROR.model_copy(update={"message": "x" * 5000})
    decision = decide(steady(), FIRST, noisy, 0, rng())
    assert len(decision.reason) < 400
    assert "x" * 199 + "…" in decision.reason


def test_multiline_error_messages_become_one_line() -> None:
    noisy = CONNECTION_ERROR.model_copy(update={"message": "first\n  second"})
    assert "refused" not in decide(steady(), FIRST, noisy, 0, rng()).reason
    assert "first second" in decide(steady(), FIRST, noisy, 0, rng()).reason


def test_history_with_streak_longer_than_all_attempts_is_refused() -> None:
    with pytest.raises(ValueError, match="streak_attempts 3 is above attempts 2"):
        History(attempts=2, streak_attempts=3)


def test_decide_reads_no_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_clock() -> float:
        raise AssertionError("decide read the clock")

    for name in ("time", "monotonic", "perf_counter", "time_ns"):
        monkeypatch.setattr(time, name, no_clock)
    history = History(attempts=3, streak_attempts=3, streak_started_at=0)
    assert isinstance(decide(steady(), history, CONNECTION_ERROR, 100, rng()), Retry)


def test_policies_package_imports_no_celery_redis_clock_or_workers() -> None:
    forbidden = {"celery", "kombu", "redis", "workers", "time", "datetime", "secrets"}
    package = Path(policies_package.__file__).parent
    for module in package.glob("*.py"):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not {name.split(".")[0] for name in names} & forbidden, module.name


# --- properties ---------------------------------------------------------------------------


@given(policies(), histories(), st.data(), st.floats(min_value=0, max_value=10**10))
def test_window_off_without_attempt_limit_always_retries_an_allowed_event(
    policy: RetryPolicy, history: History, data: st.DataObject, now: float
) -> None:
    unlimited = policy.model_copy(
        update={"duration": None, "max_attempts": None, "events": {}, "retry_on": (),
                "never_retry": ()}
    )
    event = data.draw(st.sampled_from(sorted(unlimited.on_events)))
    decision = decide(unlimited, history, data.draw(failures(event)), now, random.Random(0))
    assert isinstance(decision, Retry)


def _ceiling(policy: RetryPolicy, event: Event) -> float:
    override = policy.override(event)
    return (override.backoff or policy.backoff).max


@given(policies(), histories(), failures(), st.floats(min_value=0, max_value=10**10))
def test_every_decision_is_a_retry_within_the_ceiling_or_the_hint_or_a_named_give_up(
    policy: RetryPolicy, history: History, failed: Failure, now: float
) -> None:
    decision = decide(policy, history, failed, now, random.Random(0))
    if isinstance(decision, Retry):
        # The ceiling holds for computed delays; a job's hint is the delay exactly.
        if failed.retry_after is None:
            assert 0 <= decision.delay <= _ceiling(policy, failed.event)
        else:
            assert decision.delay == failed.retry_after
        assert decision.reason
    else:
        assert decision.limit in {"event", "never_retry", "not_retry_on", "duration",
                                  "max_attempts"}
        assert "gave up" in decision.reason


@given(
    policies(),
    histories(),
    st.data(),
    st.floats(min_value=0, max_value=10**7),
    st.floats(min_value=0, max_value=10**9),
)
def test_a_hint_is_the_delay_or_the_job_gives_up_on_duration_or_max_attempts(
    policy: RetryPolicy, history: History, data: st.DataObject, hint: float, now: float
) -> None:
    judged = policy.model_copy(update={"retry_on": (), "never_retry": ()})
    event = data.draw(st.sampled_from(sorted(judged.on_events)))
    hinted = data.draw(failures(event)).model_copy(update={"retry_after": hint})
    decision = decide(judged, history, hinted, now, random.Random(0))
    if isinstance(decision, Retry):
        assert decision.delay == hint
        return
    assert decision.limit in {"duration", "max_attempts"}
    if decision.limit == "duration":
        # It gave up only because the hint lands past the end of the window.
        override = judged.override(event)
        if override.sets("duration"):
            window, started = override.duration, history.event_started_at.get(event, now)
        else:
            window, started = judged.duration, history.streak_started_at
        assert window is not None
        assert max(0.0, now - (now if started is None else started)) + hint > window


@settings(max_examples=60)
@given(
    policies(),
    st.sampled_from(list(Event)),
    st.integers(min_value=10, max_value=600),
    st.integers(),
)
def test_a_finite_window_or_attempt_limit_always_ends_the_streak(
    policy: RetryPolicy, event: Event, attempt_time: int, seed: int
) -> None:
    override = policy.override(event)
    window = override.duration if override.sets("duration") else policy.duration
    limit = override.max_attempts if override.sets("max_attempts") else policy.max_attempts
    if window is not None:
        window = min(window, 6 * 3600.0)
        if override.sets("duration"):
            policy = policy.model_copy(
                update={"events": {**policy.events,
                                   event: override.model_copy(update={"duration": window})}}
            )
        else:
            policy = policy.model_copy(update={"duration": window})
    if window is None and limit is None:
        limit = 25
        policy = policy.model_copy(update={"max_attempts": limit, "events": {}})
    # Each attempt takes at least attempt_time, so a window is used up within this many.
    bound = min(
        limit if limit is not None else 10**9,
        int(window // attempt_time) + 2 if window is not None else 10**9,
    )
    failed = Failure(event=event, error_type="builtins.Exception",
                     error_mro=("builtins.Exception",))
    steps = simulate(policy, failed, bound, random.Random(seed), attempt_time=attempt_time)
    assert isinstance(steps[-1].decision, GiveUp)


@settings(max_examples=50)
@given(policies(), st.sampled_from(list(Event)), st.integers())
def test_the_same_seed_gives_the_same_schedule(
    policy: RetryPolicy, event: Event, seed: int
) -> None:
    failed = Failure(event=event, error_type="builtins.Exception")
    first = simulate(policy, failed, 40, random.Random(seed), attempt_time=5)
    assert simulate(policy, failed, 40, random.Random(seed), attempt_time=5) == first


@given(policies())
def test_effective_values_of_any_policy_parse_back_to_it(policy: RetryPolicy) -> None:
    again = parse_policy(policy.effective(), name=policy.name)
    assert again.effective() == policy.effective()
    assert again == policy
