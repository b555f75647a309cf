"""durable-retry's Celery side: durable jobs, their state in Redis, recovery.

    from workers import durable_task, NoCapacity, Permanent

    @durable_task(policy="forever", bind=True)
    def sync_account(self, account_id: int) -> None: ...

``celery -A workers worker`` runs a worker for the jobs of this package's
ready-made app; a module of your own that imports ``app`` and declares jobs
runs with ``celery -A yourmodule worker``. A project with its own Celery app
passes ``app=`` to ``durable_task``, or writes ``@app.task(base=DurableTask,
policy=...)``; a reusable module (a Django app's ``tasks.py``) uses
``shared_durable_task``. The layer installs itself on each app a job is
registered on, and everything it publishes goes through that app.

The package has three parts (docs/DESIGN.md, "Layout"): ``workers.core``
(the durable state machine; no Celery), ``workers.integration`` (Celery and
kombu) and ``workers.ops`` (retryctl, control, metrics).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Each public name and the module it lives in. They are imported on first use
# (PEP 562), so ``retryctl`` and the metrics, which import ``workers.ops`` and
# ``workers.core`` only, do not pay for importing Celery and kombu at start
# (about a second of a command's time); ``from workers import durable_task``
# and ``celery -A workers`` work as before.
_EXPORTS = {
    "CheckpointTooLarge": "workers.core.errors",
    "NoCapacity": "workers.core.errors",
    "Permanent": "workers.core.errors",
    "RetryOptionError": "workers.core.errors",
    "RetryRequested": "workers.core.errors",
    "JobRecord": "workers.core.records",
    "JobState": "workers.core.records",
    "AppConfigError": "workers.integration.appconf",
    "durable_task": "workers.integration.decorator",
    "shared_durable_task": "workers.integration.decorator",
    "app": "workers.integration.default_app",
    "durable_of": "workers.integration.extension",
    "install": "workers.integration.extension",
    "TaskOptionError": "workers.integration.options",
    "DurableTask": "workers.integration.task",
}

__all__ = [
    "AppConfigError",
    "CheckpointTooLarge",
    "DurableTask",
    "JobRecord",
    "JobState",
    "NoCapacity",
    "Permanent",
    "RetryOptionError",
    "RetryRequested",
    "TaskOptionError",
    "app",
    "durable_of",
    "durable_task",
    "install",
    "shared_durable_task",
]  # the names of _EXPORTS (tests/test_structure.py checks they agree)

if TYPE_CHECKING:
    from workers.core.errors import (
        CheckpointTooLarge,
        NoCapacity,
        Permanent,
        RetryOptionError,
        RetryRequested,
    )
    from workers.core.records import JobRecord, JobState
    from workers.integration.appconf import AppConfigError
    from workers.integration.decorator import durable_task, shared_durable_task
    from workers.integration.default_app import app
    from workers.integration.extension import durable_of, install
    from workers.integration.options import TaskOptionError
    from workers.integration.task import DurableTask


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workers' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
