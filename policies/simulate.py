"""Play a policy forward on a job that keeps failing, to see its schedule.

Time here is synthetic: the first failure happens at 0 and each later attempt
fails ``attempt_time`` seconds after it starts. Every attempt fails the same
way; a ``failure`` with ``retry_after`` plays a job that always gives that
hint (a service's Retry-After, a migrated ``countdown``), so the schedule
shows the hint as the delay and where the window or ``max_attempts`` stops it.
Used by ``retryctl policies simulate`` and by the property tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from policies.decide import Decision, Failure, GiveUp, History, decide
from policies.model import Event, RetryPolicy
from policies.rates import describe_rate


def advance(history: History, failed: Event, failed_at: float) -> History:
    """The history the next failure is decided with, after a retry of this one.

    The failure just decided joins the counts, and the next attempt is counted.
    """
    return History(
        attempts=history.attempts + 1,
        streak_attempts=history.streak_attempts + 1,
        streak_started_at=(
            failed_at if history.streak_started_at is None else history.streak_started_at
        ),
        event_failures={
            **history.event_failures,
            failed: history.event_failures.get(failed, 0) + 1,
        },
        event_started_at={failed: failed_at, **history.event_started_at},
    )


@dataclass(frozen=True, slots=True)
class Step:
    """One failed attempt of a simulated job and what the policy decided."""

    attempt: int
    failed_at: float
    decision: Decision

    @property
    def next_attempt_at(self) -> float | None:
        """When the next attempt starts, or None if the policy gave up."""
        if isinstance(self.decision, GiveUp):
            return None
        return self.failed_at + self.decision.delay


def simulate(
    policy: RetryPolicy,
    failure: Failure,
    attempts: int,
    rng: random.Random,
    attempt_time: float = 0.0,
) -> list[Step]:
    """Decide up to ``attempts`` failures in a row; stop early at the first give-up."""
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    if attempt_time < 0:
        raise ValueError(f"attempt_time must be >= 0, got {attempt_time}")
    history = History(attempts=1, streak_attempts=1)
    now = 0.0
    steps: list[Step] = []
    for attempt in range(1, attempts + 1):
        decision = decide(policy, history, failure, now, rng)
        steps.append(Step(attempt, now, decision))
        if isinstance(decision, GiveUp):
            break
        history = advance(history, failure.event, now)
        now += decision.delay + attempt_time
    return steps


def budget_note(policy: RetryPolicy, event: Event) -> str | None:
    """What the policy's retry budget does to the schedule above, or None without one.

    The schedule is one job's; the budget is the fleet's: it delays a retry
    only when the other jobs of the budget have used it up.
    """
    budget = policy.retry_budget(event)
    if budget is None:
        return None
    shared = (
        f"every job of policy {policy.name}"
        if budget.name == policy.name
        else f"the {event} retries of every job of policy {policy.name}"
    )
    jobs = max(1, round(budget.rate * 60))
    return (
        f"retries are capped at {describe_rate(budget.rate)} fleet-wide (max_retry_rate, "
        f"shared by {shared}): a retry due when the budget is used up waits for the next "
        f"free slot, without counting an attempt; if {jobs} jobs fail together, the last "
        "of them starts its retry about 1m after its scheduled time"
    )
