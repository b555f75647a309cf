"""What every retryctl command shares: exit codes, error output, JSON output, the console."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import IntEnum
from typing import Any, NoReturn

import click
from rich.console import Console


class ExitCode(IntEnum):
    """retryctl's exit codes. Scripts may rely on them."""

    OK = 0
    NOT_FOUND = 1  # the job (or other named thing) does not exist
    USAGE = 2  # bad usage or bad input (click's own usage errors exit 2 as well)
    REDIS_UNREACHABLE = 3


console = Console(highlight=False, soft_wrap=True)
"""Standard output. soft_wrap keeps each row on one line, for grep and narrow terminals."""

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: ExitCode = ExitCode.USAGE) -> NoReturn:
    """Print ``retryctl: error: <message>`` to stderr (one line per line) and exit with code."""
    for line in message.splitlines() or [""]:
        click.echo(f"retryctl: error: {line}", err=True)
    sys.exit(int(code))


def print_json(data: Any) -> None:
    """Print data as JSON: sorted keys, indent 2, nothing else on stdout."""
    click.echo(json.dumps(data, sort_keys=True, indent=2))


def print_rows(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a plain aligned table, one row per line, without wrapping."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [headers, *rows]
    text = "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
    click.echo(text)
