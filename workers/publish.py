"""Publishing the next attempt of a job, and the words Flower shows for it.

Both the task (a short delay, as a broker countdown) and the sweeper (a long
delay, an overdue one, a recovered crash, a resume) publish through
:func:`publish_attempt`, so every attempt's message looks the same: the same
task id (one row in Flower), ``retries`` = attempts so far, the attempt it is
meant for in the ``durable_attempt`` header (what claim fences on), and a
``kwargsrepr`` that carries the retry facts for Flower's search.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from celery import Celery
from celery.utils.saferepr import saferepr
from kombu.utils import json as kombu_json

from policies import format_duration

ATTEMPT_HEADER = "durable_attempt"


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


def publish_attempt(
    app: Celery,
    *,
    job_id: str,
    task: str,
    args_json: str,
    kwargs_json: str,
    attempt: int,
    queue: str | None,
    eta: datetime | None,
    policy: str,
    first_failure_at: float | None,
) -> None:
    """Publish the message for ``attempt`` of a job (same task id as before)."""
    args = kombu_json.loads(args_json)
    kwargs = kombu_json.loads(kwargs_json)
    options: dict[str, Any] = {}
    if queue:
        options["queue"] = queue
    app.send_task(
        task,
        args=args,
        kwargs=kwargs,
        task_id=job_id,
        eta=eta,
        retries=attempt - 1,
        headers={ATTEMPT_HEADER: attempt},
        # As apply_async shows them (a tuple), so Flower's Arguments row does
        # not change from "('a',)" to "['a']" at the first retry.
        argsrepr=saferepr(tuple(args), app.amqp.argsrepr_maxsize),
        kwargsrepr=flower_kwargsrepr(
            kwargs, attempts=attempt - 1, first_failure_at=first_failure_at, policy=policy
        ),
        **options,
    )
