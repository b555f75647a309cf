"""Reading job records in tests."""

from __future__ import annotations

from tests.support.ops import control
from workers import JobRecord, JobState


def state_of(job_id: str) -> JobState | None:
    record = control.status(job_id)
    return record.state if record else None


def in_state(job_id: str, *states: JobState) -> JobRecord | None:
    """The job's record if it is in one of ``states`` (for ``wait_for``)."""
    record = control.status(job_id)
    return record if record is not None and record.state in states else None
