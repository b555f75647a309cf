"""compute_backoff: exponential delays, capped, jittered by the random source it is handed."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from policy_strategies import backoffs

from policies import Backoff, compute_backoff


def test_delays_double_from_initial_without_jitter() -> None:
    backoff = Backoff(initial=1, factor=2, max=600, jitter="none")
    delays = [compute_backoff(backoff, n, random.Random(0)) for n in range(1, 6)]
    assert delays == [1, 2, 4, 8, 16]


def test_delay_stops_at_the_ceiling() -> None:
    backoff = Backoff(initial=1, factor=2, max=600, jitter="none")
    assert compute_backoff(backoff, 11, random.Random(0)) == 600


def test_factor_one_keeps_the_delay_constant() -> None:
    backoff = Backoff(initial=30, factor=1, max=600, jitter="none")
    assert compute_backoff(backoff, 500, random.Random(0)) == 30


def test_equal_jitter_waits_at_least_half_the_delay() -> None:
    backoff = Backoff(initial=100, factor=1, max=600, jitter="equal")
    rng = random.Random(1)
    delays = [compute_backoff(backoff, 1, rng) for _ in range(200)]
    assert min(delays) >= 50
    assert max(delays) <= 100


def test_full_jitter_spreads_delays_below_the_capped_delay() -> None:
    backoff = Backoff(initial=100, factor=1, max=600, jitter="full")
    rng = random.Random(1)
    delays = [compute_backoff(backoff, 1, rng) for _ in range(200)]
    assert min(delays) < 50 < max(delays) <= 100


def test_retry_number_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="got 0"):
        compute_backoff(Backoff(), 0, random.Random(0))


@given(backoffs(), st.integers(min_value=1, max_value=10**12), st.integers())
def test_delay_is_never_negative_nor_above_the_ceiling(backoff: Backoff, n: int, seed: int) -> None:
    delay = compute_backoff(backoff, n, random.Random(seed))
    assert 0 <= delay <= backoff.max


@given(backoffs(), st.integers(min_value=1, max_value=10**6))
def test_without_jitter_delays_never_decrease(backoff: Backoff, n: int) -> None:
    steady = backoff.model_copy(update={"jitter": "none"})
    rng = random.Random(0)
    assert compute_backoff(steady, n, rng) <= compute_backoff(steady, n + 1, rng)


@given(backoffs(), st.sampled_from([10_000, 1_000_000, 10**18]))
def test_huge_retry_numbers_do_not_overflow(backoff: Backoff, n: int) -> None:
    steady = backoff.model_copy(update={"jitter": "none"})
    expected_ceiling = backoff.max if backoff.initial > 0 and backoff.factor >= 1.01 else None
    delay = compute_backoff(steady, n, random.Random(0))
    if expected_ceiling is not None:
        assert delay == expected_ceiling
    assert 0 <= delay <= backoff.max


@given(backoffs(), st.integers(min_value=1, max_value=1000), st.integers())
def test_same_seed_gives_the_same_delay(backoff: Backoff, n: int, seed: int) -> None:
    first = compute_backoff(backoff, n, random.Random(seed))
    assert compute_backoff(backoff, n, random.Random(seed)) == first
