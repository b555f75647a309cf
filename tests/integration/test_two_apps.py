"""Two Celery apps in one process: each app's layer publishes, sweeps and revokes
through that app only, and the ready-made ``workers.app`` is never used.

App A's broker is Redis database 2, app B's database 3 (the state stays in
database 0, each app under its own key prefix). A job of each app loses its
worker (its lease expires); each app's sweeper recovers its own job and
publishes the retry, which must land in that app's broker, in that app's queue.
"""

from __future__ import annotations

import types
import uuid
from typing import Any

import pytest
import redis
from celery import Celery
from celery.worker.control import Panel
from kombu.utils import json as kombu_json

import workers
from tests.conftest import wait_for
from tests.userapp.celery import broker_url
from workers import DurableTask, JobState, durable_of, durable_task, install
from workers.core.outcomes import Payload
from workers.core.settings import load_settings
from workers.integration.extension import control_of
from workers.integration.patches.revoke import install_revoke_hook

pytestmark = pytest.mark.integration


def _app(name: str, db: int, queue: str, state_url: str) -> Celery:
    app = Celery(name, broker=broker_url(state_url, db), set_as_current=False)
    app.conf.task_routes = {f"{name}.*": {"queue": queue}}
    install(app, settings=load_settings().model_copy(update={"key_prefix": name}))
    return app


@pytest.fixture
def apps(redis_server, redis_client, monkeypatch) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"workers.app published {args} {kwargs}")

    monkeypatch.setattr(workers.app, "send_task", refuse)
    app_a = _app("app_a", 2, "queue_a", redis_server.url)
    app_b = _app("app_b", 3, "queue_b", redis_server.url)

    @durable_task(app=app_a, policy="fast", name="app_a.job", shared=False)
    def job_a() -> None: ...

    @app_b.task(base=DurableTask, policy="fast", name="app_b.job", shared=False)
    def job_b() -> None: ...

    clients = {
        app: redis.Redis.from_url(app.conf.broker_url, decode_responses=True)
        for app in (app_a, app_b)
    }
    yield types.SimpleNamespace(a=app_a, b=app_b, job_a=job_a, job_b=job_b, broker=clients)
    for client in clients.values():
        client.close()
    for app in (app_a, app_b):
        app.close()


def _lost_attempt(app: Celery, task: str, queue: str) -> str:
    """A job whose first attempt started and whose worker vanished (a 1 ms lease)."""
    job_id = str(uuid.uuid4())
    claimed = durable_of(app).runtime.store.claim(
        job_id, 1, task=task, policy="fast", owner="gone@host:1", lease_ms=1,
        payload=Payload("[]", "{}", queue),
    )  # fmt: skip
    assert claimed.__class__.__name__ == "Claimed"
    return job_id


def _messages(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    return [kombu_json.loads(raw) for raw in client.lrange(queue, 0, -1)]


def test_each_apps_sweeper_publishes_on_its_own_broker_and_queue(apps, redis_client):
    jobs = {
        apps.a: (_lost_attempt(apps.a, "app_a.job", "queue_a"), "app_a.job", "queue_a"),
        apps.b: (_lost_attempt(apps.b, "app_b.job", "queue_b"), "app_b.job", "queue_b"),
    }
    for app, (job_id, task, queue) in jobs.items():
        sweeper = durable_of(app).sweeper(owner=f"test-{app.main}")
        broker = apps.broker[app]

        def published(sweeper: Any = sweeper, broker: redis.Redis = broker,
                      queue: str = queue) -> list[dict[str, Any]]:  # fmt: skip
            sweeper.run_once()  # recovers the expired lease, then publishes when due
            return _messages(broker, queue)

        messages = wait_for(published, 20, f"{app.main}'s sweeper to publish the retry")
        assert [(m["headers"]["id"], m["headers"]["task"]) for m in messages] == [(job_id, task)]
        assert messages[0]["headers"]["durable_attempt"] == 2
        record = durable_of(app).runtime.store.get(job_id)
        assert record and record["state"] == JobState.QUEUED.value
    # Nothing crossed: each broker holds only its own app's queue, and the
    # ready-made app's broker (the state database) holds no queue at all.
    assert _messages(apps.broker[apps.a], "queue_b") == []
    assert _messages(apps.broker[apps.b], "queue_a") == []
    assert [k for k in redis_client.keys("*") if not k.startswith(("app_a:", "app_b:"))] == []


def test_the_revoke_hook_kills_in_the_store_of_the_app_whose_worker_got_it(apps):
    install_revoke_hook(control_of)
    job_a = _lost_attempt(apps.a, "app_a.job", "queue_a")
    job_b = _lost_attempt(apps.b, "app_b.job", "queue_b")
    # What Celery's control panel hands a command in app B's worker.
    consumer = types.SimpleNamespace(app=apps.b, event_dispatcher=None)
    state = types.SimpleNamespace(app=apps.b, consumer=consumer)
    Panel.data["revoke"](state, job_b)
    assert durable_of(apps.b).runtime.store.get(job_b)["state"] == JobState.KILLED.value
    assert durable_of(apps.a).runtime.store.get(job_a)["state"] == JobState.RUNNING.value
    assert control_of(apps.b).app is apps.b
