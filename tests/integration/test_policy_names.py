"""Every policy a job can run under has a name that every reader knows.

An inline policy is named after its task (or by the ``name`` its mapping
gives); workers register the policies they serve in Redis when they start, so
retryctl explains an inline policy it has no file for.
"""

from __future__ import annotations

import pytest
from celery import Celery

from policies import PolicyError, RetryPolicy
from workers import DurableTask, durable_task, install


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
