"""Publishing the next attempt of a job as a Celery message, on the job's own app.

Both the task (a short delay, as a broker countdown) and the sweeper (a long
delay, an overdue one, a recovered crash, a resume) publish through
:class:`CeleryPublisher`, so every attempt's message looks the same: the same
task id (one row in Flower), ``retries`` = attempts so far, the attempt it is
meant for in the ``durable_attempt`` header (what claim fences on), and a
``kwargsrepr`` that carries the retry facts for Flower's search.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.utils.saferepr import saferepr
from kombu.utils import json as kombu_json

from workers.core.publisher import NextAttempt
from workers.core.texts import flower_kwargsrepr

ATTEMPT_HEADER = "durable_attempt"
"""The message header that names the attempt a delivery is for (what claim fences on)."""


def attempt_from_header(value: Any) -> int | None:
    """The attempt a delivery is for: 1 without the header, None when it is garbage."""
    if value is None:
        return 1
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 1 else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and int(value) >= 1:
        return int(value)
    return None


class CeleryPublisher:
    """Publishes attempts through one Celery app: its broker, its routes, its task names."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def publish(self, message: NextAttempt) -> None:
        """Publish the message for ``message.attempt`` of a job (same task id as before)."""
        app = self.app
        args = kombu_json.loads(message.args_json)
        kwargs = kombu_json.loads(message.kwargs_json)
        options: dict[str, Any] = {}
        if message.queue:
            options["queue"] = message.queue
        app.send_task(
            message.task,
            args=args,
            kwargs=kwargs,
            task_id=message.job_id,
            eta=message.eta,
            retries=message.attempt - 1,
            headers={ATTEMPT_HEADER: message.attempt},
            # As apply_async shows them (a tuple), so Flower's Arguments row does
            # not change from "('a',)" to "['a']" at the first retry.
            argsrepr=saferepr(tuple(args), app.amqp.argsrepr_maxsize),
            kwargsrepr=flower_kwargsrepr(
                kwargs, attempts=message.attempt - 1,
                first_failure_at=message.first_failure_at, policy=message.policy,
            ),
            **options,
        )
