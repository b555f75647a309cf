"""Every policy a job can run under has a name that every reader knows.

An inline policy is named after its task (or by the ``name`` its mapping
gives); workers register the policies they serve in Redis when they start, so
retryctl explains an inline policy it has no file for.
"""

from __future__ import annotations

import json
import os

import pytest
import redis
from celery import Celery

from policies import PolicyError, RetryPolicy
from tests import jobs
from tests.conftest import wait_for
from tests.support.cli import run_retryctl
from tests.support.ops import control, runtime
from workers import DurableTask, JobState, durable_task, install
from workers.core import policy_registry
from workers.core.store import Store
from workers.ops.cli.common import ExitCode

pytestmark = pytest.mark.integration


@pytest.fixture
def app() -> Celery:
    celery_app = Celery("names", set_as_current=False)
    install(celery_app)
    return celery_app


def test_an_inline_policy_is_named_after_its_task(app: Celery) -> None:
    @durable_task(app=app, policy={"duration": "off"})
    def sync_account() -> None: ...

    @durable_task(app=app, policy={"duration": "2h"}, name="myapp.jobs.render")
    def render() -> None: ...

    assert sync_account.policy.name == sync_account.name == f"{__name__}.sync_account"
    assert render.policy.name == "myapp.jobs.render"
    assert sync_account.policy.duration is None and render.policy.duration == 7200


def test_an_inline_policy_keeps_the_name_its_mapping_gives(app: Celery) -> None:
    @durable_task(app=app, policy={"name": "partner-api", "duration": "2h"})
    def call_partner() -> None: ...

    assert call_partner.policy.name == "partner-api"


def test_a_catalogue_policy_keeps_its_name(app: Celery) -> None:
    @durable_task(app=app, policy="forever")
    def forever_job() -> None: ...

    assert forever_job.policy.name == "forever"


def test_app_task_with_base_durable_task_names_its_policy_the_same_way(app: Celery) -> None:
    @app.task(base=DurableTask, policy={"max_attempts": 3}, name="myapp.jobs:odd name")
    def odd() -> None: ...

    @app.task(base=DurableTask, policy=RetryPolicy(max_attempts=4))
    def built() -> None: ...

    @app.task(base=DurableTask, policy="forever")
    def by_name() -> None: ...

    assert odd.policy.name == "myapp.jobs-odd-name" and odd.policy.max_attempts == 3
    assert built.policy.name == built.name and built.policy.max_attempts == 4
    assert by_name.policy.name == "forever"


def test_an_inline_policy_may_not_take_the_name_of_another_catalogue_policy(app: Celery) -> None:
    with pytest.raises(PolicyError, match="like a different policy of the catalogue"):

        @durable_task(app=app, policy={"name": "forever", "duration": "2h"})
        def shadowing() -> None: ...

    @durable_task(app=app, policy={"name": "forever", "duration": "off"})  # the same: fine
    def same() -> None: ...

    assert same.policy.name == "forever"


# -- the registry of the policies workers serve -----------------------------------------


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return runtime().store


def test_a_worker_registers_the_policies_it_serves_when_it_starts(store, start_worker):
    start_worker()

    entries = store.policy_entries()
    inline = jobs.fails_under_inline_policy
    assert inline.policy.name == "tests.jobs.fails_under_inline_policy"
    for name in (inline.policy.name, "alerting", "fast-forever", "default"):
        assert name in entries, sorted(entries)
    registered = policy_registry.lookup(store, inline.policy.name)
    assert registered is not None and registered.policy == inline.policy
    assert registered.worker.startswith("w1@")


def test_registering_overwrites_per_name_and_keeps_the_hash_bounded(store, monkeypatch):
    first = RetryPolicy(name="p-0", max_attempts=1)
    policy_registry.register(store, [first], "host:1")
    again = first.model_copy(update={"max_attempts": 2})
    policy_registry.register(store, [again], "host:2")
    found = policy_registry.lookup(store, "p-0")
    assert found is not None and found.policy.max_attempts == 2 and found.worker == "host:2"

    monkeypatch.setattr(policy_registry, "MAX_POLICIES", 5)
    policy_registry.register(store, [RetryPolicy(name=f"p-{i}") for i in range(1, 5)], "host:1")
    policy_registry.register(store, [RetryPolicy(name=f"q-{i}") for i in range(3)], "host:3")
    names = set(store.policy_entries())
    assert len(names) == 5 and {"q-0", "q-1", "q-2"} <= names  # the newest kept

    huge = RetryPolicy(name="huge", description="x" * policy_registry.MAX_ENTRY_BYTES)
    assert policy_registry.register(store, [huge], "host:1") == []


def test_retryctl_explains_an_inline_policy_job_from_the_registry(store, start_worker):
    start_worker()
    job_id = jobs.fails_under_inline_policy.delay().id
    name = jobs.fails_under_inline_policy.policy.name
    wait_for(lambda: (r := control.status(job_id)) is not None and r.state is JobState.RETRYING,
             30, "the inline-policy job to wait for its retry")  # fmt: skip

    url = os.environ["DURABLE_REDIS_URL"]  # retryctl gets no DURABLE_POLICY_FILE: only Redis

    shown = run_retryctl(url, "show", job_id)

    assert shown.returncode == ExitCode.OK, shown.stderr
    out = shown.stdout
    assert "not in the catalogue" not in out and "in neither" not in out
    assert f"policy {name} (effective values; registered by worker w1@" in out
    assert "max_attempts: 40" in out
    assert "window: off; it retries until it succeeds" in out  # a why line from the policy
    assert "attempts: 1 of 40 in this streak." in out

    described = run_retryctl(url, "policies", "show", name)
    assert described.returncode == ExitCode.OK, described.stderr
    assert "max_attempts: 40" in described.stdout and "registered by worker" in described.stdout
    played = run_retryctl(url, "policies", "simulate", name, "--attempts", "3")
    assert played.returncode == ExitCode.OK, played.stderr
    assert "1m" in played.stdout

    listed = run_retryctl(url, "list", "--policy", name, "--json")
    assert [job["id"] for job in json.loads(listed.stdout)] == [job_id]
