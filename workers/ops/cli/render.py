"""How retryctl shows one job: times with their distance from now, JSON.

Tables of jobs are laid out in :mod:`workers.ops.cli.columns`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from policies import format_duration
from workers.core.records import JobRecord


def utc(moment: datetime) -> str:
    """``2026-05-01 10:00:00`` in UTC."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def span(seconds: float) -> str:
    """A duration to the whole second: ``3h12m``, ``45s``."""
    return format_duration(max(0, round(seconds)))


def since(moment: datetime | None, now: datetime) -> str:
    """``2026-05-01 10:00:00 (3h12m)``: a time in the past and how long ago."""
    if moment is None:
        return "-"
    return f"{utc(moment)} ({span((now - moment).total_seconds())})"


def how_soon(moment: datetime, now: datetime) -> str:
    """``in 3m``, ``now``, or ``overdue 4s`` once the time has passed."""
    ahead = (moment - now).total_seconds()
    if ahead >= 0.5:
        return f"in {span(ahead)}"
    return f"overdue {span(-ahead)}" if ahead < -0.5 else "now"


def until(moment: datetime | None, now: datetime) -> str:
    """``2026-05-01 10:03:00 (in 3m)``, or ``(overdue 4s)`` once the time has passed."""
    if moment is None:
        return "-"
    return f"{utc(moment)} ({how_soon(moment, now)})"


def job_json(record: JobRecord, now: datetime) -> dict[str, Any]:
    """A job as JSON: the record's fields, plus how long it has failed and waits."""
    data = record.model_dump(mode="json")
    first, due = record.first_failure_at, record.next_attempt_at
    data["failing_for_seconds"] = (
        round((now - first).total_seconds(), 3) if first is not None else None
    )
    data["next_attempt_in_seconds"] = (
        round((due - now).total_seconds(), 3) if due is not None else None
    )
    return data
