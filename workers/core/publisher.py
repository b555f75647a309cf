"""The one seam between the durable core and the broker.

The core decides *that* an attempt must be published (a short retry, a due
one, a recovered crash) and describes it as a :class:`NextAttempt`; the
integration layer (``workers.integration.publish``) knows *how*: a Celery
message with the same task id, on the job's app and broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from policies import RetryPolicy
from workers.core.outcomes import Payload


@dataclass(frozen=True)
class NextAttempt:
    """Everything it takes to publish one attempt of a job."""

    job_id: str
    task: str
    payload: Payload  # arguments and the first enqueue's options, kept whole
    attempt: int
    queue: str | None  # where it goes (the policy's retry_queue, else the first run's)
    eta: datetime | None
    policy: str
    first_failure_at: float | None
    event: str | None = None  # the failure this attempt retries after (its retry budget)
    budget_slot_taken: bool = False  # its retry-budget slot is taken: start without asking


@dataclass(frozen=True)
class EndedJob:
    """A job the sweeper ended (its policy gave up after a lost attempt)."""

    job_id: str
    task: str
    payload: Payload
    reason: str


class Publisher(Protocol):
    """The broker side of the core: publishing attempts, and telling Celery's side
    what Celery did not see happen."""

    def publish(self, message: NextAttempt) -> None:
        """Publish an attempt's message; raise if the broker refused it."""

    def gave_up(self, job: EndedJob) -> None:
        """The job ended dead without a worker raising its error (a sweeper judged a
        lost attempt): store its failure as a result and fire its link_error, as
        the worker does when a job's last attempt raises."""


def retry_queue(policy: RetryPolicy | None, first_queue: str | None) -> str | None:
    """Where a retry goes: the policy's ``retry_queue``, else the queue of the first run."""
    return (policy.retry_queue if policy else None) or first_queue or None
