"""Durations as people write them ("90s", "1h30m", "off") and as the code keeps them.

In the code a duration is a float number of seconds, and ``None`` means *off*
(no limit). Strings are read by :func:`parse_duration` and written back by
:func:`format_duration`, so a value shown by ``retryctl`` can be pasted into a
policy file.
"""

from __future__ import annotations

import math
import re

ACCEPTED = "a duration like 30s, 90m, 2h, 7d, 1w, 1h30m, or off"

_UNIT_SECONDS: dict[str, float] = {
    "w": 7 * 86400.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}

# Units appear at most once, largest first: "1h30m" is fine, "30m1h" and "1h1h" are typos.
_NUMBER = r"(\d+(?:\.\d+)?)"
_DURATION_RE = re.compile(
    "".join(rf"(?:{_NUMBER}{unit})?" for unit in _UNIT_SECONDS) + r"\Z",
)

_OFF_WORDS = frozenset({"off"})


def _refuse(value: object) -> ValueError:
    return ValueError(f"{value!r} is not a duration; accepted: {ACCEPTED}")


def parse_duration(value: object) -> float | None:
    """Read a duration and return it in seconds, or ``None`` for ``off``.

    Accepts strings such as ``"90s"``, ``"1h30m"``, ``"250ms"`` or ``"off"``, and
    non-negative ints or floats taken as seconds. Anything else raises
    ``ValueError`` with a message naming the value and what is accepted.
    """
    if isinstance(value, bool):
        # True is an int to Python; as a duration it is always a mistake.
        raise _refuse(value)
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise _refuse(value)
        return seconds
    if not isinstance(value, str):
        raise _refuse(value)
    text = value.strip()
    if text.lower() in _OFF_WORDS:
        return None
    match = _DURATION_RE.match(text)
    if not text or match is None:
        raise _refuse(value)
    total = 0.0
    for unit, number in zip(_UNIT_SECONDS, match.groups(), strict=True):
        if number is not None:
            total += float(number) * _UNIT_SECONDS[unit]
    if not math.isfinite(total):
        raise _refuse(value)
    return total


_BIG_UNITS = (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def format_duration(seconds: float | None) -> str:
    """Write seconds in the compact form ``parse_duration`` reads ("1h30m", "40s", "off").

    Under a second the value is shown in milliseconds ("250ms"); under a minute
    with up to three decimals ("1.5s"); from a minute on, to the whole second.
    """
    if seconds is None:
        return "off"
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration")
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    if millis < 60_000:
        text = f"{millis / 1000:.3f}".rstrip("0").rstrip(".")
        return f"{text}s"
    remaining = round(seconds)
    parts = []
    for unit, size in _BIG_UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
