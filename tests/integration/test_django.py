"""The Django example (examples/django_project) as a real client, end to end.

The test process drives the project's view with Django's test client; a real
``celery -A proj worker -Q billing`` runs the job from the project's own
directory. The project's broker (PROJ_BROKER_URL) is Redis database 1, the
job state database 0. The first attempt fails and its retry waits as a
countdown message the worker holds; the worker's whole process group is
SIGKILLed while it waits; a new worker finishes the job, on the project's
broker and queue.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.conftest import wait_for
from tests.support.broker import held_by_a_worker
from tests.support.records import in_state
from tests.support.worker_process import ROOT
from tests.userapp.celery import broker_url
from workers import JobState

pytestmark = pytest.mark.integration

PROJECT = ROOT / "examples" / "django_project"
QUEUE = "billing"


@pytest.fixture
def django_env(redis_server, worker_env) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "proj.settings",
        "PROJ_BROKER_URL": broker_url(redis_server.url, 1),
        "PYTHONPATH": os.pathsep.join([str(PROJECT), worker_env["PYTHONPATH"]]),
    }


@pytest.fixture
def django_client(django_env, monkeypatch) -> Iterator[Any]:
    """Django set up in this process for the example project; Celery's current app
    is put back afterwards (the project's app becomes current when it is made)."""
    from celery import _state

    previous = _state.get_current_app()
    for name in ("DJANGO_SETTINGS_MODULE", "PROJ_BROKER_URL"):
        monkeypatch.setenv(name, django_env[name])
    monkeypatch.syspath_prepend(str(PROJECT))
    import django
    from django.test import Client

    django.setup()
    yield Client()
    previous.set_current()


def test_a_job_enqueued_by_a_django_view_survives_a_worker_sigkill(
    redis_client, django_env, django_client, start_worker
):
    broker = redis.Redis.from_url(django_env["PROJ_BROKER_URL"], decode_responses=True)
    worker_options: dict[str, Any] = {
        "module": "proj", "queues": QUEUE, "cwd": PROJECT, "env": django_env,
    }  # fmt: skip
    first = start_worker("w1", **worker_options)

    response = django_client.post("/invoices/42/charge")
    assert response.status_code == 202
    job_id = response.json()["job_id"]

    waiting = wait_for(lambda: in_state(job_id, JobState.RETRYING), 30, "attempt 1 to fail")
    assert waiting.task == "billing.tasks.charge" and waiting.policy == "billing"
    wait_for(lambda: held_by_a_worker(broker, job_id, 2), 30,
             "w1 to hold the retry's countdown message")  # fmt: skip
    first.kill()  # the retry's 3 s countdown message is lost with the worker's memory
    second = start_worker("w2", **worker_options)

    done = wait_for(lambda: in_state(job_id, JobState.SUCCEEDED), 60, "attempt 2 to succeed")
    assert done.attempts == 2
    assert redis_client.hgetall(f"billing:attempts:{job_id}") == {"1": "1", "2": "1"}
    assert redis_client.hget("billing:charged", "42") == job_id
    assert broker.exists(f"_kombu.binding.{QUEUE}")
    # No broker traffic on the state database: no queue, binding or unacked hash.
    assert [k for k in redis_client.keys("*")
            if k == QUEUE or k.startswith(("_kombu", "unacked"))] == []  # fmt: skip
    assert "durable-retry: policies" in second.log_text()
    assert sys.modules["proj.celery"].app.main == "proj"
