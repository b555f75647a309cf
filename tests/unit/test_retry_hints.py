"""A job's delay hint as the job gives it: NoCapacity(retry_after=...) or Celery's
self.retry(exc=..., countdown=N), checked where raised and as the policy sees it."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import pytest

from policies import Event
from workers import NoCapacity, RetryOptionError, RetryRequested
from workers.core.failures import failure_from_exception
from workers.core.retry_call import retry_requested


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


# --- self.retry(...) in a durable job ------------------------------------------------------

NOW = 1_700_000_000.0


def requested(**given: object) -> RetryRequested:
    fields: dict[str, Any] = {"exc": None, "countdown": None, "eta": None, "refused": {},
                              "now": NOW, "handling": None}  # fmt: skip
    fields.update(given)
    return retry_requested("myapp.sync", **fields)


def test_countdown_is_the_hint_and_exc_the_failure() -> None:
    refused = ConnectionError("refused")
    failure = failure_from_exception(requested(exc=refused, countdown=60))
    assert failure.event is Event.ERROR
    assert failure.error_type == "builtins.ConnectionError"
    assert "builtins.OSError" in failure.error_mro
    assert failure.message == "refused"
    assert failure.retry_after == 60.0


def test_eta_is_the_hint_from_redis_now() -> None:
    eta = datetime.fromtimestamp(NOW + 90, tz=timezone.utc)
    assert requested(eta=eta).retry_after == 90.0


def test_a_naive_eta_is_utc() -> None:
    naive = datetime.fromtimestamp(NOW + 30, tz=timezone.utc).replace(tzinfo=None)
    assert requested(eta=naive).retry_after == 30.0


def test_a_past_eta_or_negative_countdown_is_no_wait() -> None:
    assert requested(eta=datetime.fromtimestamp(NOW - 5, tz=timezone.utc)).retry_after == 0.0
    assert requested(countdown=-3).retry_after == 0.0


def test_without_countdown_or_eta_the_policy_backoff_decides() -> None:
    assert failure_from_exception(requested(exc=ConnectionError("x"))).retry_after is None


def test_a_no_capacity_keeps_its_own_hint_unless_a_countdown_is_given() -> None:
    busy = NoCapacity("busy", retry_after=5)
    assert failure_from_exception(requested(exc=busy)).retry_after == 5.0
    failure = failure_from_exception(requested(exc=busy, countdown=20))
    assert (failure.event, failure.retry_after) == (Event.NO_CAPACITY, 20.0)


def test_without_exc_the_exception_being_handled_is_the_failure() -> None:
    handled = TimeoutError("slow")
    assert requested(handling=handled, countdown=1).exc is handled


def test_without_any_exception_the_failure_is_retry_requested() -> None:
    failure = failure_from_exception(requested(countdown=2))
    assert failure.error_type == "workers.core.errors.RetryRequested"
    assert (failure.event, failure.retry_after) == (Event.ERROR, 2.0)
    assert failure.message == "the job asked to retry in 2s"


@pytest.mark.parametrize(
    ("option", "value", "why"),
    [
        ("max_retries", 5, "the policy's max_attempts and duration decide when to stop"),
        ("max_retries", None, "the policy's max_attempts and duration decide when to stop"),
        ("args", (1, 2), "runs the arguments the job was enqueued with"),
        ("throw", False, "raise self.retry(...) so the attempt ends as a failure"),
        ("queue", "slow", "the policy's retry_queue"),
        ("priority", 9, "the layer publishes the retry itself"),
    ],
)
def test_options_that_fight_the_policy_are_refused_with_the_reason(
    option: str, value: object, why: str
) -> None:
    with pytest.raises(RetryOptionError) as refused:
        requested(refused={option: value})
    assert str(refused.value).startswith(
        f"myapp.sync: self.retry({option}={value!r}) is not accepted in a durable job: "
    )
    assert why in str(refused.value)
    assert isinstance(refused.value, TypeError)


@pytest.mark.parametrize(
    ("given", "error", "text"),
    [
        ({"countdown": 1, "eta": datetime.now(timezone.utc)}, RetryOptionError, "not both"),
        ({"countdown": "60"}, RetryOptionError, "countdown is a number of seconds"),
        ({"countdown": math.inf}, ValueError, "countdown must be finite"),
        ({"countdown": 400 * 86400}, ValueError, "countdown must be from 0 to"),
        ({"eta": "2030-01-01"}, RetryOptionError, "eta is a datetime"),
        ({"exc": ConnectionError}, RetryOptionError, "exc must be an exception instance"),
    ],
)
def test_bad_retry_arguments_are_refused(
    given: dict[str, object], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        requested(**given)
