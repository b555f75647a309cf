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


@dataclass(frozen=True)
class NextAttempt:
    """Everything it takes to publish one attempt of a job."""

    job_id: str
    task: str
    args_json: str
    kwargs_json: str
    attempt: int
    queue: str | None
    eta: datetime | None
    policy: str
    first_failure_at: float | None


class Publisher(Protocol):
    """Publishes an attempt's message; raises if the broker refused it."""

    def publish(self, message: NextAttempt) -> None: ...


def retry_queue(policy: RetryPolicy | None, first_queue: str | None) -> str | None:
    """Where a retry goes: the policy's ``retry_queue``, else the queue of the first run."""
    return (policy.retry_queue if policy else None) or first_queue or None
