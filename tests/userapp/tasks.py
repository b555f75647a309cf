"""The user app's durable jobs, declared in every form the layer supports.

Each body counts its runs (tests/support/bodyruns.py) in the job-state Redis.
"""

from __future__ import annotations

import time
from typing import Any

from tests.support.bodyruns import ran, state_client
from tests.userapp.celery import app
from workers import DurableTask, durable_task, shared_durable_task


def allow(job_id: str) -> None:
    """Let a ``held_*`` job succeed from its next attempt on."""
    state_client().set(f"allow:{job_id}", 1)


def _fail_until_allowed(task: Any) -> str:
    ran(task)
    if not state_client().exists(f"allow:{task.request.id}"):
        raise ConnectionError(f"not allowed yet (attempt {task.attempt})")
    return "ok"


# -- the three declaration forms -------------------------------------------------


@durable_task(app=app, policy="fast", bind=True)
def flaky_durable(self: Any, failures: int) -> str:
    if ran(self) <= failures:
        raise ConnectionError(f"flaky failure at attempt {self.attempt}")
    return "ok"


@app.task(base=DurableTask, policy="fast", bind=True)
def flaky_app_task(self: Any, failures: int) -> str:
    if ran(self) <= failures:
        raise ConnectionError(f"flaky failure at attempt {self.attempt}")
    return "ok"


@shared_durable_task(policy="fast", bind=True)
def flaky_shared(self: Any, failures: int) -> str:
    if ran(self) <= failures:
        raise ConnectionError(f"flaky failure at attempt {self.attempt}")
    return "ok"


# -- retries that wait -------------------------------------------------------------


@durable_task(app=app, policy="long-wait", bind=True)
def fail_once_long(self: Any) -> str:
    """Its retry waits 4 s, longer than DURABLE_MAX_COUNTDOWN: only in the due set."""
    if ran(self) == 1:
        raise ConnectionError("first attempt fails; the retry waits in Redis")
    return "ok"


@durable_task(app=app, policy="countdown-3s", bind=True)
def fail_once_countdown(self: Any) -> str:
    """Its retry waits 3 s as a broker countdown message the worker holds."""
    if ran(self) == 1:
        raise ConnectionError("first attempt fails; the retry rides a countdown")
    return "ok"


@durable_task(app=app, policy="hour-wait", bind=True)
def held_for_an_hour(self: Any) -> str:
    """Fails until allowed; each retry waits an hour (only retry-now brings it sooner)."""
    return _fail_until_allowed(self)


@durable_task(app=app, policy="three-tries", bind=True)
def held_three_tries(self: Any) -> str:
    """Fails until allowed; dead after three attempts (resume brings it back)."""
    return _fail_until_allowed(self)


@durable_task(app=app, policy="fast", bind=True)
def sleeper(self: Any, seconds: float) -> str:
    ran(self)
    time.sleep(seconds)
    return "slept"
