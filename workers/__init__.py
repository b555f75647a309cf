"""durable-retry's Celery side: durable jobs, their state in Redis, recovery.

    from workers import durable_task, NoCapacity, Permanent

    @durable_task(policy="forever", bind=True)
    def sync_account(self, account_id: int) -> None: ...

``celery -A workers worker`` runs a worker for the jobs of this package; a
module of your own that imports ``app`` and declares jobs runs with
``celery -A yourmodule worker``.
"""

from workers.celery_app import app
from workers.durable import TaskOptionError, durable_task
from workers.errors import CheckpointTooLarge, NoCapacity, Permanent
from workers.records import JobRecord, JobState
from workers.task import DurableTask

__all__ = [
    "CheckpointTooLarge",
    "DurableTask",
    "JobRecord",
    "JobState",
    "NoCapacity",
    "Permanent",
    "TaskOptionError",
    "app",
    "durable_task",
]
