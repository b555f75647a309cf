"""Rates as people write them ("50/s", "600/m", "off") and as the code keeps them.

In the code a rate is a float number of events a second, and ``None`` means
*off* (no limit). :func:`parse_rate` reads the strings and :func:`format_rate`
writes them back, so a value ``retryctl`` shows can be pasted into a policy file.
"""

from __future__ import annotations

import math
import re

RATE_ACCEPTED = "a rate like 50/s, 600/m or 100/h (at least 1/h, at most 1000000/s), or off"

MAX_RATE = 1_000_000.0
"""The highest rate accepted, a second: past it a budget would limit nothing."""

MIN_RATE = 1 / 3600
"""The lowest rate accepted, a second (one an hour): a slower budget is a pause."""

_PER_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\Z")


def _refuse(value: object, why: str = "") -> ValueError:
    return ValueError(f"{value!r} is not a rate{why}; accepted: {RATE_ACCEPTED}")


def parse_rate(value: object) -> float | None:
    """Read a rate and return it per second, or ``None`` for ``off``.

    Accepts ``"50/s"``, ``"600/m"``, ``"1.5/h"`` and ``"off"`` (YAML's bare
    ``off`` arrives as False, a missing value as None: both off). A bare number
    is refused: ``10`` could mean a second or a minute. Anything else raises
    ``ValueError`` naming the value and what is accepted.
    """
    if value is None or value is False:
        return None
    if not isinstance(value, str):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        why = " (say per what: 10/s or 10/m)" if number else ""
        raise _refuse(value, why)
    text = value.strip().lower()
    if text == "off":
        return None
    match = _RATE_RE.match(text)
    if match is None:
        raise _refuse(value)
    rate = float(match.group(1)) / _PER_SECONDS[match.group(2)]
    if not math.isfinite(rate) or rate < MIN_RATE:
        raise _refuse(value, " (at least 1/h; write off for no limit)")
    if rate > MAX_RATE:
        raise _refuse(value, f" (at most {MAX_RATE:.0f}/s)")
    return rate


def format_rate(rate: float | None) -> str:
    """Write a rate in the form ``parse_rate`` reads: "50/s", "2/m", "off".

    The first unit (a second, a minute, an hour) where the count is whole, else
    the first where it is at least 1 and reads back exactly, else per second
    with every digit: ``parse_rate(format_rate(r)) == r``.
    """
    if rate is None:
        return "off"
    counts = [(unit, rate * seconds, seconds) for unit, seconds in _PER_SECONDS.items()]
    for unit, count, seconds in counts:
        if count >= 1 and round(count) / seconds == rate:
            return f"{round(count)}/{unit}"
    for unit, count, seconds in counts:
        if count >= 1 and float(repr(count)) / seconds == rate:
            return f"{count!r}/{unit}"
    return f"{rate!r}/s"


def describe_rate(rate: float) -> str:
    """For sentences: "10/s", "2/m (one every 30s)"."""
    text = format_rate(rate)
    if rate >= 1:
        return text
    return f"{text} (one every {1 / rate:g}s)"
