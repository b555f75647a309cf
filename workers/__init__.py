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
]
