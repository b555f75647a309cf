"""One attempt of a job, as the code that runs or recovers it sees it.

An :class:`Attempt` is what the claim (or a sweeper's lease takeover) handed
out: the job, the attempt number, the lease owner, the job hash as the store
returned it, the policy and Redis' clock. Everything that records the
attempt's outcome takes it whole, instead of a dozen loose arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from policies import History, RetryPolicy
from workers.core.clock import RedisClock
from workers.core.records import history_from_fields


@dataclass
class Attempt:
    """A running attempt: ``fields`` is the job hash as the last script answered it."""

    job_id: str
    number: int
    owner: str
    task: str
    policy: RetryPolicy
    fields: dict[str, str]
    clock: RedisClock
    # The claim token of the delivery running it ("" for a sweeper's takeover):
    # recording its outcome twice (a lost reply) answers as the first time.
    token: str = ""

    @property
    def first_failure_at(self) -> float | None:
        """When the current failure streak began (seconds, Redis' clock), if it has."""
        first = self.fields.get("first_failure_at")
        return int(first) / 1000 if first else None

    def history(self) -> History:
        """The failure history the policy judges this attempt's failure against."""
        return history_from_fields(self.fields)
