"""Sends test jobs by name on a broker and reads their state from a store of its own
(a Sentinel or Cluster topology a test started), as a producer and an operator would."""

from __future__ import annotations

import uuid

import redis
from celery import Celery

from tests.support.ops import control_of
from workers import JobState
from workers.core.store import Store


class Sender:
    """Sends jobs on ``broker_url``; reads their state through ``store``."""

    def __init__(self, broker_url: str, store: Store, name: str = "test-client") -> None:
        self.app = Celery(name, broker=broker_url)
        self.app.conf.task_serializer = "json"
        self.store = store

    def send(self, task: str, *args: object) -> str:
        job_id = str(uuid.uuid4())
        self.app.send_task(f"tests.jobs.{task}", args=list(args), task_id=job_id)
        return job_id

    def state(self, job_id: str) -> JobState | None:
        try:
            record = control_of(self.store).status(job_id)
        except redis.RedisError:
            return None
        return record.state if record else None

    def all_succeeded(self, ids: list[str]) -> bool:
        return all(self.state(i) is JobState.SUCCEEDED for i in ids)
