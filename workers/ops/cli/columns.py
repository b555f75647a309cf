"""Job tables that fit a terminal without cutting what an operator acts on.

As ``kubectl get`` and ``docker ps`` do, columns have priorities. On a
terminal of ``width`` columns:

- the id, the state and the attempt count are never cut;
- the whole table is shown, full ids included, when it fits with at least
  :data:`ERROR_MIN` columns of last error; otherwise ids are shortened to the
  shortest prefix of at least :data:`SHORT_ID` characters that no other row's
  id starts with (every retryctl command takes a unique prefix), times are
  relative only (``in 3s``, ``11s ago``), and the other columns are added by
  priority while they fit: next attempt, task, failing since, policy;
- the last error takes the width left and is the one column that is cut (``…``).

``width=None`` (output that is not a terminal, or ``--wide``) shows every
column whole: full ids, the whole error on the row's one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from rich.cells import cell_len, set_cell_size

from workers.core.records import JobRecord
from workers.ops.cli.render import how_soon, span

GAP = "  "
ERROR_MIN = 20
"""The narrowest last-error column worth showing beside the others."""
SHORT_ID = 12
"""Shortened ids keep at least this many characters (docker's 12): a random
UUID's first 12 are, in practice, unique among millions of jobs."""


@dataclass(frozen=True)
class Column:
    header: str
    priority: int  # 0: always shown; higher: added later, dropped first when narrow
    right: bool = False


ID = Column("ID", 0)
TASK = Column("TASK", 2)
POLICY = Column("POLICY", 4)
STATE = Column("STATE", 0)
ATTEMPTS = Column("ATTEMPTS", 0, right=True)
FAILING = Column("FAILING SINCE (UTC)", 3)
NEXT = Column("NEXT ATTEMPT (UTC)", 1)
ERROR = Column("LAST ERROR", 5)
COLUMNS = (ID, TASK, POLICY, STATE, ATTEMPTS, FAILING, NEXT, ERROR)
"""In the order they are printed."""


# -- compact times -----------------------------------------------------------


def _clock(moment: datetime, now: datetime) -> str:
    """``06:09:01``, with the date in front only when it is not today (UTC)."""
    moment, today = moment.astimezone(timezone.utc), now.astimezone(timezone.utc)
    if moment.date() == today.date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def ago(moment: datetime | None, now: datetime, relative_only: bool = False) -> str:
    """``06:09:01 (11s ago)``, or ``11s ago``: a time in the past, compact."""
    if moment is None:
        return "-"
    when = f"{span((now - moment).total_seconds())} ago"
    return when if relative_only else f"{_clock(moment, now)} ({when})"


def ahead(moment: datetime | None, now: datetime, relative_only: bool = False) -> str:
    """``06:09:01 (in 3s)``, ``(now)``, or ``(overdue 4s)`` once the time has passed."""
    if moment is None:
        return "-"
    when = how_soon(moment, now)
    return when if relative_only else f"{_clock(moment, now)} ({when})"


# -- rows --------------------------------------------------------------------


def _flat(text: str | None) -> str:
    return " ".join(text.split()) if text else "-"


def job_cells(
    record: JobRecord, now: datetime, stuck: bool, relative_only: bool = False
) -> dict[Column, str]:
    return {
        ID: record.id,
        TASK: record.task or "-",
        POLICY: record.policy or "-",
        STATE: record.state.value + (", stuck" if stuck else "")
        + (", budget" if record.waits_for_budget else ""),
        ATTEMPTS: str(record.attempts),
        FAILING: ago(record.first_failure_at, now, relative_only),
        NEXT: ahead(record.next_attempt_at, now, relative_only),
        ERROR: _flat(record.last_error),
    }


def short_ids(ids: Sequence[str], least: int = SHORT_ID) -> list[str]:
    """Each id's shortest prefix of at least ``least`` characters that no other id starts with."""
    shortened = []
    for job_id in ids:
        others = [other for other in ids if other != job_id]
        length = min(least, len(job_id))
        while length < len(job_id) and any(o.startswith(job_id[:length]) for o in others):
            length += 1
        shortened.append(job_id[:length])
    return shortened


def _width(rows: Sequence[dict[Column, str]], column: Column) -> int:
    return max(cell_len(row[column]) for row in rows)


def _fit(text: str, width: int, right: bool = False) -> str:
    size = cell_len(text)
    if size > width:
        return set_cell_size(text, width - 1) + "…"
    pad = " " * (width - size)
    return pad + text if right else text + pad


def _lines(rows: Sequence[dict[Column, str]], widths: dict[Column, int]) -> list[str]:
    """The rows (the header first) as text: the columns in ``widths``, each fitted to it."""
    shown = [column for column in COLUMNS if column in widths]
    return [GAP.join(_fit(row[c], widths[c], c.right) for c in shown).rstrip() for row in rows]


def job_lines(
    records: Sequence[JobRecord],
    now: datetime,
    stuck_ids: frozenset[str] = frozenset(),
    width: int | None = None,
) -> list[str]:
    """The job table as lines: a header, then one line per job (see the module doc)."""
    headers = {column: column.header for column in COLUMNS}
    rows = [headers, *(job_cells(r, now, r.id in stuck_ids) for r in records)]
    full = {column: _width(rows, column) for column in COLUMNS}
    if width is None:
        return _lines(rows, full)
    others = sum(full[c] for c in COLUMNS if c is not ERROR) + len(GAP) * (len(COLUMNS) - 2)
    error_min = min(ERROR_MIN, full[ERROR])
    if others + len(GAP) + error_min <= width:
        return _lines(rows, {**full, ERROR: min(full[ERROR], width - others - len(GAP))})
    # Narrower: unique id prefixes, times relative only ("in 3s", "11s ago").
    headers = {**headers, FAILING: "FAILING SINCE", NEXT: "NEXT ATTEMPT"}
    rows = [headers, *(job_cells(r, now, r.id in stuck_ids, relative_only=True) for r in records)]
    for row, short in zip(rows[1:], short_ids([r.id for r in records]), strict=True):
        row[ID] = short
    full = {column: _width(rows, column) for column in COLUMNS}
    widths = {c: full[c] for c in COLUMNS if c.priority == 0}
    used = sum(widths.values()) + len(GAP) * (len(widths) - 1)
    for column in sorted((c for c in COLUMNS if c.priority > 0 and c is not ERROR),
                         key=lambda c: c.priority):  # fmt: skip
        need = full[column] + len(GAP)
        if used + need + len(GAP) + error_min > width:
            break
        widths[column] = need - len(GAP)
        used += need
    room = width - used - len(GAP)
    if room >= min(error_min, cell_len(ERROR.header)):
        widths[ERROR] = min(room, full[ERROR])
    return _lines(rows, widths)
