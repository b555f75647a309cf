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

from workers.core.errors import JobGaveUp
from workers.core.publisher import EndedJob, NextAttempt
from workers.core.texts import flower_kwargsrepr

ATTEMPT_HEADER = "durable_attempt"
"""The message header that names the attempt a delivery is for (what claim fences on)."""

EVENT_HEADER = "durable_event"
"""The failure event a retry's delivery follows: which retry budget it draws on."""

BUDGET_HEADER = "durable_budget"
"""Set ("taken") on the delivery of a job that waited for its retry-budget slot."""


def attempt_from_header(value: Any) -> int | None:
    """The attempt a delivery is for: 1 without the header, None when it is garbage."""
    if value is None:
        return 1
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 1 else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and int(value) >= 1:
        return int(value)
    return None


def send_options(options: dict[str, Any]) -> dict[str, Any]:
    """``app.send_task`` keywords that publish a later attempt as the first one went
    (``options`` as ``enqueue.options_from_message`` stored them)."""
    send: dict[str, Any] = {}
    for name in (
        "group_id", "group_index", "shadow", "time_limit",
        "soft_time_limit", "ignore_result", "replaced_task_nesting", "link", "link_error",
        "chain", "chord", "priority", "reply_to", "exchange", "routing_key",
    ):  # fmt: skip
        if name in options:
            send[name] = options[name]
    stamped = options.get("stamped_headers")
    if stamped:
        send["stamped_headers"] = stamped
        stamps = options.get("stamps") or {}
        send.update({name: stamps[name] for name in stamped if name in stamps})
    return send



def _budget_headers(message: NextAttempt) -> dict[str, str]:
    """What the delivery needs to find its retry budget (none for first attempts)."""
    headers = {}
    if message.event:
        headers[EVENT_HEADER] = message.event
    if message.budget_slot_taken:
        headers[BUDGET_HEADER] = "taken"
    return headers


class CeleryPublisher:
    """Publishes attempts through one Celery app: its broker, its routes, its task names.

    Every later attempt goes out with the options of the job's first message
    (canvas, headers, priority, time limits, routing: :func:`send_options`),
    as Celery's own ``Task.retry`` keeps them.
    """

    def __init__(self, app: Celery) -> None:
        self.app = app

    def publish(self, message: NextAttempt) -> None:
        """Publish the message for ``message.attempt`` of a job (same task id as before)."""
        app = self.app
        payload = message.payload
        args = kombu_json.loads(payload.args)
        kwargs = kombu_json.loads(payload.kwargs)
        stored = kombu_json.loads(payload.options) if payload.options else {}
        options = send_options(stored)
        if message.queue:
            # The policy's retry_queue wins over the first message's route.
            options.pop("exchange", None)
            options.pop("routing_key", None)
            options["queue"] = message.queue
        elif "exchange" not in options and payload.queue:
            options["queue"] = payload.queue
        app.send_task(
            message.task,
            args=args,
            kwargs=kwargs,
            task_id=message.job_id,
            eta=message.eta,
            retries=message.attempt - 1,
            headers={
                **(stored.get("headers") or {}),
                # Over what send_task would set: published from inside a running
                # task, the retry would otherwise name that task as its parent.
                "root_id": stored.get("root_id") or message.job_id,
                "parent_id": stored.get("parent_id"),
                ATTEMPT_HEADER: message.attempt,
                **_budget_headers(message),
            },
            # As apply_async shows them (a tuple), so Flower's Arguments row does
            # not change from "('a',)" to "['a']" at the first retry.
            argsrepr=saferepr(tuple(args), app.amqp.argsrepr_maxsize),
            kwargsrepr=flower_kwargsrepr(
                kwargs, attempts=message.attempt - 1,
                first_failure_at=message.first_failure_at, policy=message.policy,
            ),
            **options,
        )

    def gave_up(self, job: EndedJob) -> None:
        """Store FAILURE as the job's result and fire its link_error (and its chord
        part), as Celery's worker does when a task raises for the last time."""
        from celery.app.task import Context

        stored = kombu_json.loads(job.payload.options) if job.payload.options else {}
        request = Context(
            id=job.job_id, task=job.task, args=kombu_json.loads(job.payload.args),
            kwargs=kombu_json.loads(job.payload.kwargs), errbacks=stored.get("link_error"),
            chord=stored.get("chord"), group=stored.get("group_id"),
            group_index=stored.get("group_index"), root_id=stored.get("root_id"),
            parent_id=stored.get("parent_id"), reply_to=stored.get("reply_to"),
            ignore_result=bool(stored.get("ignore_result")),
            delivery_info={"routing_key": job.payload.queue},
        )  # fmt: skip
        self.app.backend.mark_as_failure(
            job.job_id, JobGaveUp(job.reason), request=request, call_errbacks=True
        )
