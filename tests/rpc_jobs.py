"""A project whose results travel back over the broker: Celery's ``rpc://`` backend
(``celery -A tests.rpc_jobs worker -Q rpc``).

The RPC backend sends a task's result to the ``reply_to`` queue of the process
that called ``apply_async``, so every attempt of a durable job must carry the
first message's ``reply_to``, whoever publishes it (a worker's countdown, a
sweeper for a retry held in Redis).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from tests.jobs import _ran
from workers import durable_task


def _db(number: int) -> str:
    base = os.environ["DURABLE_REDIS_URL"].rsplit("/", 1)[0]
    return f"{base}/{number}"


app = Celery("rpcproject")
app.conf.update(
    broker_url=_db(5),
    result_backend="rpc://",
    task_routes={"tests.rpc_jobs.*": {"queue": "rpc"}},
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    broker_transport_options={"visibility_timeout": 3600},
)


@durable_task(app=app, policy="fast", bind=True)
def step(self: Any, x: int, failures: int) -> int:
    """Fails ``failures`` times (countdown retries), then returns x + 1."""
    if _ran(self) <= failures:
        raise ConnectionError(f"step fails at attempt {self.attempt}")
    return x + 1


@durable_task(app=app, policy="long-wait", bind=True)
def slow_step(self: Any, x: int, failures: int) -> int:
    """As ``step``, but a retry is held in the due set and a sweeper publishes it."""
    if _ran(self) <= failures:
        raise ConnectionError(f"slow_step fails at attempt {self.attempt}")
    return x + 1
