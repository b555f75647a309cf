"""Every way to declare a durable job resolves and checks it as ``durable_task`` does,
and a worker's start completes or refuses the app's settings (appconf)."""

from __future__ import annotations

import types
from typing import Any

import pytest
from celery import Celery

from policies import PolicyError, RetryPolicy
from workers import DurableTask, TaskOptionError, durable_of, durable_task, shared_durable_task
from workers.core.settings import Settings
from workers.integration.appconf import AppConfigError, prepare_app


def _app(**conf: Any) -> Celery:
    return Celery("forms", broker="memory://", set_as_current=False, **conf)


def test_app_task_with_base_resolves_the_policy_name_at_declaration() -> None:
    app = _app()

    @app.task(base=DurableTask, policy="forever", shared=False)
    def job() -> None: ...

    assert isinstance(job.policy, RetryPolicy) and job.policy.name == "forever"
    assert durable_of(app).policy_for(job.name, "other") is job.policy


def test_app_task_with_base_and_no_policy_runs_under_the_default_policy() -> None:
    app = _app()

    @app.task(base=DurableTask, shared=False)
    def job() -> None: ...

    assert job.policy.name == "default"


def test_app_task_with_a_bad_policy_name_fails_at_first_use_naming_the_task() -> None:
    app = _app()

    @app.task(base=DurableTask, policy="nope", shared=False)
    def job() -> None: ...

    with pytest.raises(PolicyError, match=r"task .*job: unknown policy 'nope'"):
        job.delay  # noqa: B018  (first use: Celery makes the task class now)


@pytest.mark.parametrize("option", ["max_retries", "autoretry_for", "expires", "acks_late"])
def test_app_task_with_base_refuses_what_durable_task_refuses_in_the_same_words(
    option: str,
) -> None:
    value: Any = (ValueError,) if option == "autoretry_for" else 3
    with pytest.raises(TaskOptionError) as by_decorator:
        durable_task(policy="forever", **{option: value})
    app = _app()

    def job() -> None: ...

    with pytest.raises(TaskOptionError) as by_celery:
        app.task(base=DurableTask, policy="forever", shared=False, lazy=False, **{option: value})(
            job
        )
    assert str(by_celery.value) == str(by_decorator.value)


def test_a_subclass_setting_a_refused_option_is_refused() -> None:
    with pytest.raises(TaskOptionError, match="max_retries= is not accepted"):

        class Limited(DurableTask):
            max_retries = 5


def test_shared_durable_task_checks_options_and_policy_mappings_at_declaration() -> None:
    with pytest.raises(TaskOptionError, match="max_retries= is not accepted"):
        shared_durable_task(policy="forever", max_retries=3)
    with pytest.raises(TaskOptionError, match="app= is not accepted"):
        shared_durable_task(policy="forever", app=_app())
    with pytest.raises(PolicyError):
        shared_durable_task(policy={"duration": "not a duration"})


def test_shared_durable_task_binds_to_each_app_with_that_apps_catalogue() -> None:
    @shared_durable_task(policy="forever", name="forms.shared_job")
    def shared_job() -> None: ...

    first, second = _app(), _app()
    for app in (first, second):
        task = app.tasks["forms.shared_job"]
        assert isinstance(task, DurableTask) and task.app is app
        assert task.policy.name == "forever"
        assert durable_of(app).policy_for("forms.shared_job", "x") is task.policy


# -- settings on the worker's app ----------------------------------------------


SETTINGS = Settings(max_countdown=300)


def _django_like(**settings: Any) -> Celery:
    app = Celery("django_like", set_as_current=False)
    app.config_from_object(types.SimpleNamespace(**settings), namespace="CELERY")
    return app


def test_unset_settings_are_filled_in_and_the_projects_own_are_kept() -> None:
    app = _django_like(CELERY_BROKER_URL="redis://127.0.0.1:6379/1",
                       CELERY_BROKER_TRANSPORT_OPTIONS={"max_connections": 7})  # fmt: skip
    warnings: list[str] = []
    prepare_app(app, SETTINGS, task_events=True, warn=warnings.append)
    assert app.conf.broker_transport_options == {
        "max_connections": 7, "visibility_timeout": SETTINGS.effective_visibility_timeout,
    }  # fmt: skip
    assert app.conf.task_send_sent_event is True
    assert warnings == []


def test_an_explicit_choice_that_only_costs_flower_is_kept_with_a_warning() -> None:
    app = _django_like(CELERY_BROKER_URL="redis://127.0.0.1:6379/1",
                       CELERY_TASK_SEND_SENT_EVENT=False)  # fmt: skip
    warnings: list[str] = []
    prepare_app(app, SETTINGS, task_events=False, warn=warnings.append)
    assert app.conf.task_send_sent_event is False
    assert any("task_send_sent_event is off" in w for w in warnings)
    assert any("-E" in w for w in warnings)


def test_a_visibility_timeout_not_above_the_countdown_ceiling_is_refused() -> None:
    app = _django_like(CELERY_BROKER_URL="redis://127.0.0.1:6379/1",
                       CELERY_BROKER_TRANSPORT_OPTIONS={"visibility_timeout": 300})  # fmt: skip
    with pytest.raises(AppConfigError, match=r"visibility_timeout'\]=300 .*DURABLE_MAX_COUNTDOWN"):
        prepare_app(app, SETTINGS)


def test_a_broker_other_than_redis_gets_no_visibility_timeout() -> None:
    app = _django_like(CELERY_BROKER_URL="amqp://guest@127.0.0.1//")
    prepare_app(app, SETTINGS, warn=lambda _: None)
    assert "visibility_timeout" not in app.conf.broker_transport_options
