"""A job's delay hint as the job gives it: NoCapacity(retry_after=...), checked where raised."""

from __future__ import annotations

import math

import pytest

from workers import NoCapacity
from workers.core.failures import failure_from_exception


def test_no_capacity_hint_reaches_the_policy() -> None:
    assert failure_from_exception(NoCapacity("busy", retry_after=3)).retry_after == 3.0


@pytest.mark.parametrize("bad", [-1, math.inf, math.nan, 366 * 86400])
def test_no_capacity_refuses_a_hint_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError, match="retry_after must be from 0 to 31536000 seconds"):
        NoCapacity("busy", retry_after=bad)


@pytest.mark.parametrize("bad", ["30s", True])
def test_no_capacity_refuses_a_hint_that_is_not_a_number(bad: object) -> None:
    with pytest.raises(TypeError, match="retry_after must be a number of seconds"):
        NoCapacity("busy", retry_after=bad)  # type: ignore[arg-type]
