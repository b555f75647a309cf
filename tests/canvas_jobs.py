"""A project's own Celery app, as Celery's docs lay one out, with canvas and a
result backend (``celery -A tests.canvas_jobs worker -Q canvas``).

Its broker is another Redis database than the job state, its ``task_routes``
send every task to the ``canvas`` queue, and results go to a third database.
Every durable body records, per attempt, what its message carried (headers,
priority, time limits, ids, queue), so a test can compare attempts.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any

import redis
from celery import Celery

from tests.jobs import _ran
from workers import durable_task


def _db(number: int) -> str:
    base = os.environ["DURABLE_REDIS_URL"].rsplit("/", 1)[0]
    return f"{base}/{number}"


app = Celery("canvasproject")
app.conf.update(
    broker_url=_db(3),
    result_backend=_db(4),
    task_routes={"tests.canvas_jobs.*": {"queue": "canvas"}},
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_send_task_events=True,
    task_send_sent_event=True,
    broker_transport_options={"visibility_timeout": 3600},
    result_extended=True,
)


@lru_cache(maxsize=1)
def _state() -> redis.Redis:
    return redis.Redis.from_url(os.environ["DURABLE_REDIS_URL"], decode_responses=True)


def seen(job_id: str) -> dict[int, dict[str, Any]]:
    """attempt -> what that attempt's message carried."""
    rows = _state().hgetall(f"seen:{job_id}")
    return {int(attempt): json.loads(row) for attempt, row in rows.items()}


def _note(task: Any) -> int:
    attempt = _ran(task)
    request = task.request
    info = request.delivery_info or {}
    row = {
        "traceparent": request.get("traceparent"),
        "tenant": request.get("tenant"),
        "priority": info.get("priority"),
        "routing_key": info.get("routing_key"),
        "timelimit": list(request.timelimit or []),
        "root_id": request.root_id,
        "parent_id": request.parent_id,
        "group": request.group,
    }
    _state().hset(f"seen:{request.id}", str(attempt), json.dumps(row))
    return attempt


@durable_task(app=app, policy="fast", bind=True)
def step(self: Any, x: int, failures: int) -> int:
    """Fails ``failures`` times, then returns x + 1."""
    if _note(self) <= failures:
        raise ConnectionError(f"step fails at attempt {self.attempt}")
    return x + 1


@durable_task(app=app, policy="long-wait", bind=True)
def slow_step(self: Any, x: int, failures: int) -> int:
    """As ``step``, but each retry waits 4 s: longer than the tests' max countdown,
    so it is held in the due set and a sweeper publishes it."""
    if _note(self) <= failures:
        raise ConnectionError(f"slow_step fails at attempt {self.attempt}")
    return x + 1


@durable_task(app=app, policy="countdown-3s", bind=True)
def held_step(self: Any, x: int, failures: int) -> int:
    """As ``step``, but each retry waits 3 s on a broker countdown."""
    if _note(self) <= failures:
        raise ConnectionError(f"held_step fails at attempt {self.attempt}")
    return x + 1


@durable_task(app=app, policy="three-tries", bind=True)
def doomed(self: Any) -> None:
    """Fails every attempt: dead after three."""
    _note(self)
    raise ValueError("doomed fails")


@durable_task(app=app, policy="three-tries", bind=True)
def kills_its_worker(self: Any) -> None:
    """Every attempt SIGKILLs its own pool process: the sweeper judges each one."""
    import signal

    _note(self)
    os.kill(os.getpid(), signal.SIGKILL)


@app.task
def times_ten(x: int) -> int:
    _state().rpush("plain:times_ten", x)
    return x * 10


@app.task
def collect(results: list[int]) -> list[int]:
    _state().rpush("plain:collect", json.dumps(results))
    return sorted(results)


@app.task
def on_error(request: Any, exc: Any, traceback: Any) -> None:
    """An errback (link_error): records which job failed."""
    _state().rpush("plain:errors", request.id)


def plain_calls(name: str) -> list[str]:
    return list(_state().lrange(f"plain:{name}", 0, -1))
