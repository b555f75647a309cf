"""Durable from enqueue: the job's record is written before its first message goes out.

``DurableTask.apply_async`` hands Celery a producer that wraps the real one
(:class:`FirstMessage`). Celery builds the message as always (routes,
canvas, per-call options, stamps), and when it publishes the job's message
the wrapper first writes the record (``enqueue``): arguments and the
message's options, read from what is really on the wire, kept once for every
attempt. If Redis cannot take the record, the exception stops the publish:
nothing goes out. A first countdown longer than ``DURABLE_MAX_COUNTDOWN`` is
not published at all: the due set holds it and a sweeper publishes it when due.

:func:`options_from_message` and ``publish.send_options`` are the two halves
of keeping a message whole: what is stored from the first message, and how a
later attempt's message is built from it (docs/DESIGN.md lists the fields).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import redis
from kombu.exceptions import EncodeError
from kombu.utils import json as kombu_json

from workers.core.errors import EnqueueError
from workers.core.outcomes import Payload
from workers.core.refusals import refusal_reason
from workers.core.runtime import Runtime
from workers.core.settings import redact_url
from workers.integration.publish import ATTEMPT_HEADER

log = logging.getLogger("workers.jobs")

# Headers Celery writes itself (protocol 2, celery/app/amqp.py as_task_v2), or
# that this layer sets per attempt: every other header is the caller's, kept.
CELERY_HEADERS = frozenset({
    "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries",
    "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result",
    "replaced_task_nesting", "stamped_headers", "stamps", ATTEMPT_HEADER,
})  # fmt: skip

# Keyword arguments of kombu's Producer.publish that are not message properties.
PUBLISH_ARGUMENTS = frozenset({
    "exchange", "routing_key", "serializer", "compression", "retry", "retry_policy",
    "delivery_mode", "declare", "headers", "timeout", "confirm_timeout", "content_type",
    "content_encoding", "mandatory", "immediate",
})  # fmt: skip

MAX_OPTIONS_BYTES = 256 * 1024
"""Largest stored message options (a long chain or a chord body can be big)."""


def _name(thing: Any) -> str:
    return str(getattr(thing, "name", thing) or "")


def queue_of(publish: dict[str, Any]) -> str:
    """The queue a published message was routed to, as Celery routed it."""
    declare = publish.get("declare") or []
    for queue in declare:
        if _name(queue):
            return _name(queue)
    if not _name(publish.get("exchange")):
        return str(publish.get("routing_key") or "")
    return ""


def options_from_message(body: Any, publish: dict[str, Any]) -> dict[str, Any]:
    """What must go out again with every attempt, read from the first message.

    Only what is set is kept, so a plain job stores nothing here.
    """
    headers: dict[str, Any] = dict(publish.get("headers") or {})
    _args, _kwargs, embed = body if isinstance(body, (list, tuple)) else ((), {}, {})
    stamped = list(headers.get("stamped_headers") or [])
    options: dict[str, Any] = {}

    def keep(name: str, value: Any) -> None:
        if value not in (None, "", [], {}):
            options[name] = value

    keep("root_id", headers.get("root_id") if headers.get("root_id") != headers.get("id") else None)
    keep("parent_id", headers.get("parent_id"))
    keep("group_id", headers.get("group"))
    keep("group_index", headers.get("group_index"))
    keep("shadow", headers.get("shadow"))
    hard, soft = [*(headers.get("timelimit") or []), None, None][:2]
    keep("time_limit", hard)
    keep("soft_time_limit", soft)
    if headers.get("ignore_result"):
        options["ignore_result"] = True
    keep("replaced_task_nesting", headers.get("replaced_task_nesting"))
    if stamped:
        options["stamped_headers"] = stamped
        keep("stamps", headers.get("stamps"))
    user = {
        name: value for name, value in headers.items()
        if name not in CELERY_HEADERS and name not in stamped
    }  # fmt: skip
    keep("headers", user)
    embed = embed or {}
    keep("link", embed.get("callbacks"))
    keep("link_error", embed.get("errbacks"))
    keep("chain", embed.get("chain"))
    keep("chord", embed.get("chord"))
    properties = {k: v for k, v in publish.items() if k not in PUBLISH_ARGUMENTS}
    keep("priority", properties.get("priority"))
    keep("reply_to", properties.get("reply_to"))
    if _name(publish.get("exchange")):
        # A named exchange (topic, fanout): route as the first message was.
        options["exchange"] = _name(publish.get("exchange"))
        keep("routing_key", publish.get("routing_key"))
    return options


def _countdown_ms(headers: dict[str, Any]) -> int:
    eta = headers.get("eta")
    if not eta:
        return 0
    moment = datetime.fromisoformat(str(eta))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0, int((moment - datetime.now(timezone.utc)).total_seconds() * 1000))


class FirstMessage:
    """A producer that writes the job's record just before its first message goes out.

    Everything else (events, other messages) passes through to the real producer.
    """

    def __init__(self, producer: Any, rt: Runtime, job_id: str, task: str, policy: str) -> None:
        self._producer = producer
        self._rt = rt
        self._job_id = job_id
        self._task = task
        self._policy = policy
        self.created_ms: int | None = None  # set when this enqueue wrote the record

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def publish(self, body: Any, **publish: Any) -> Any:
        headers = publish.get("headers") or {}
        if headers.get("id") != self._job_id or headers.get("task") != self._task:
            return self._producer.publish(body, **publish)
        if self.created_ms is None and not self._record(body, publish, headers):
            return None  # only the due set holds it: a sweeper publishes it when due
        return self._producer.publish(body, **publish)

    def _record(self, body: Any, publish: dict[str, Any], headers: dict[str, Any]) -> bool:
        """Write the record; True if the message must be published now."""
        rt = self._rt
        options = options_from_message(body, publish)
        try:
            encoded = kombu_json.dumps(options) if options else ""
        except (TypeError, ValueError) as exc:
            raise EncodeError(exc) from exc
        if len(encoded) > MAX_OPTIONS_BYTES:
            raise EnqueueError(
                f"cannot enqueue {self._task} job {self._job_id}: its message options "
                f"(canvas, headers) take {len(encoded)} bytes as JSON, more than the "
                f"{MAX_OPTIONS_BYTES} bytes kept per job; pass large data by reference"
            )
        args, kwargs = (body[0], body[1]) if isinstance(body, (list, tuple)) else ([], {})
        countdown_ms = _countdown_ms(headers)
        broker_holds = countdown_ms <= rt.settings.max_countdown * 1000
        try:
            payload = Payload(
                args=kombu_json.dumps(list(args)), kwargs=kombu_json.dumps(dict(kwargs)),
                queue=queue_of(publish), options=encoded,
            )  # fmt: skip
        except (TypeError, ValueError) as exc:
            raise EncodeError(exc) from exc  # named by apply_async, as kombu's own
        try:
            enqueued = rt.store.enqueue(
                self._job_id, task=self._task, policy=self._policy, payload=payload,
                countdown_ms=countdown_ms, broker_holds=broker_holds,
                sweeper_grace_ms=rt.held_safety_ms if countdown_ms else 0,
            )  # fmt: skip
        except redis.RedisError as exc:
            reason = refusal_reason(exc)
            why = f"refuses writes ({reason})" if reason else "did not take the record"
            raise EnqueueError(
                f"cannot enqueue {self._task} job {self._job_id}: the job state at "
                f"{redact_url(rt.settings.redis_url)} {why} ({type(exc).__name__}: {exc}); "
                "nothing was published"
            ) from exc
        if enqueued.new:
            self.created_ms = enqueued.created_ms
        else:
            log.info("job %s task=%s enqueued again: the record (%s) is kept; claim drops "
                     "the extra message", self._job_id, self._task, enqueued.state)  # fmt: skip
        return broker_holds

    def forget(self) -> None:
        """The publish failed after the record was written: remove the record."""
        if self.created_ms is None:
            return
        try:
            self._rt.store.forget(self._job_id, self.created_ms)
        except redis.RedisError as exc:
            # The caller gets the broker's error; this record would make the
            # job run after the safety time, so say so.
            log.error(
                "job %s task=%s: the broker refused its message and its record could not "
                "be removed (%s); a sweeper will publish it after the safety time",
                self._job_id, self._task, exc,
            )  # fmt: skip
