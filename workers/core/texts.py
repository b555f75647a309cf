"""The words operators read: times, and the sentence Flower shows for a waiting job.

One time format everywhere a time is written as text for people or other
programs (logs, Flower, webhooks): ISO 8601 in UTC to the second, with ``Z``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from policies import format_duration


def iso(epoch_seconds: float) -> str:
    """An ISO 8601 UTC time to the second, as operators read it."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def retry_note(
    *,
    attempt: int,
    error: str,
    first_failure_at: float | None,
    now: float,
    next_attempt_at: float | None,
    policy: str,
) -> str:
    """The sentence Flower shows as the retry's exception text.

    "attempt 7 failed: ConnectionError: refused; failing since
    2026-11-28T10:00:00Z (3h12m); next attempt 2026-11-28T13:13:00Z; policy forever"
    """
    parts = [f"attempt {attempt} failed: {error}"]
    if first_failure_at is not None:
        failing_for = format_duration(max(0.0, round(now - first_failure_at)))
        parts.append(f"failing since {iso(first_failure_at)} ({failing_for})")
    if next_attempt_at is not None:
        parts.append(f"next attempt {iso(next_attempt_at)}")
    parts.append(f"policy {policy}")
    return "; ".join(parts)


def flower_kwargsrepr(
    kwargs: dict[str, Any],
    *,
    attempts: int,
    first_failure_at: float | None,
    policy: str,
    limit: int = 1024,
) -> str:
    """The job's kwargs as Flower shows them, plus the retry facts to search for.

    Flower's ``kwargs:durable_attempts=7`` search matches on this text; the real
    keyword arguments in the message body are untouched.
    """
    shown = dict(kwargs)
    shown["durable_attempts"] = attempts
    shown["durable_policy"] = policy
    if first_failure_at is not None:
        shown["durable_failing_since"] = iso(first_failure_at)
    text = repr(shown)
    return text if len(text) <= limit else text[: limit - 3] + "..."
