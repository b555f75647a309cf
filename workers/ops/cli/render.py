"""How retryctl shows one job: times with their distance from now, JSON.

Tables of jobs are laid out in :mod:`workers.ops.cli.columns`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from policies import format_duration
from workers.core.records import AttemptEntry, JobRecord


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


def history_entries(raw: list[str]) -> list[AttemptEntry]:
    """The stored history, oldest first; an entry that cannot be read is left out
    rather than hiding the others."""
    entries = []
    for text in raw:
        try:
            entries.append(AttemptEntry.from_json(text))
        except ValueError:
            continue
    return entries


def history_json(entries: list[AttemptEntry]) -> list[dict[str, Any]]:
    return [entry.model_dump(mode="json") for entry in entries]


HISTORY_HEADER = ("ATTEMPT", "STARTED (UTC)", "TOOK", "WORKER", "EVENT", "DECISION", "DELAY")


def history_lines(entries: list[AttemptEntry]) -> list[str]:
    """A table of attempts, oldest first; under each failed one its error and why
    the policy chose what it did."""
    rows = []
    for entry in entries:
        took = (
            f"{(entry.ended_at - entry.started_at).total_seconds():.1f}s"
            if entry.started_at and entry.ended_at else "-"
        )  # fmt: skip
        delay = format_duration(entry.delay_ms / 1000) if entry.delay_ms is not None else "-"
        rows.append((
            str(entry.attempt), utc(entry.started_at) if entry.started_at else "-", took,
            entry.worker or "-", entry.event, entry.decision, delay,
        ))  # fmt: skip
    header = HISTORY_HEADER
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    lines = [line(header)]
    for row, entry in zip(rows, entries, strict=True):
        lines.append(line(row))
        if entry.error:
            lines.append(f"    error: {entry.error.splitlines()[0]}")
        if entry.reason:
            lines.append(f"    why: {entry.reason}")
    return lines
