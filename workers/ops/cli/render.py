"""How retryctl shows jobs: times with their distance from now, tables, JSON."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from rich import box
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from policies import format_duration
from workers.core.records import JobRecord

ERROR_WIDTH = 70


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


def until(moment: datetime | None, now: datetime) -> str:
    """``2026-05-01 10:03:00 (in 3m)``, or ``(overdue 4s)`` once the time has passed."""
    if moment is None:
        return "-"
    ahead = (moment - now).total_seconds()
    if ahead >= 0.5:
        when = f"in {span(ahead)}"
    else:
        when = f"overdue {span(-ahead)}" if ahead < -0.5 else "now"
    return f"{utc(moment)} ({when})"


def one_line(text: str | None, width: int = ERROR_WIDTH) -> str:
    if not text:
        return "-"
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


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


JOB_COLUMNS = (
    "ID", "TASK", "POLICY", "STATE", "ATTEMPTS", "FAILING SINCE (UTC)",
    "NEXT ATTEMPT (UTC)", "LAST ERROR",
)  # fmt: skip


def job_row(record: JobRecord, now: datetime, stuck: bool = False) -> list[str]:
    state = record.state.value + (", stuck" if stuck else "")
    return [
        record.id, record.task or "-", record.policy or "-", state, str(record.attempts),
        since(record.first_failure_at, now), until(record.next_attempt_at, now),
        one_line(record.last_error),
    ]  # fmt: skip


def jobs_table(
    records: Sequence[JobRecord],
    now: datetime,
    stuck_ids: frozenset[str] = frozenset(),
    title: str | None = None,
) -> Table:
    """One job per line; cells are plain text (an error text is never read as markup)."""
    table = Table(
        box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False, show_edge=False
    )
    for name in JOB_COLUMNS:
        table.add_column(name, no_wrap=True, overflow="ellipsis")
    for record in records:
        table.add_row(*(Text(cell) for cell in job_row(record, now, record.id in stuck_ids)))
    return table


def print_wide(console: Console, renderable: RenderableType) -> None:
    """Print to a terminal at its width; to a pipe or file at the width the rows need."""
    if console.is_terminal:
        console.print(renderable)
        return
    options = console.options.update(max_width=10_000)
    width = Measurement.get(console, options, renderable).maximum
    # Console.print never goes past the console's width: print through one as wide as needed.
    wide = Console(file=console.file, width=max(width, 20), highlight=False, soft_wrap=True,
                   color_system=None)  # fmt: skip
    wide.print(renderable)
