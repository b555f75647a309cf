"""How test job bodies record that they ran, and how tests read it back.

Every body counts its run in Redis (``bodyruns:<job id>`` hash: attempt ->
times run), so a test can prove that no attempt's body ran twice. Shared by
the ready-made app's jobs (tests/jobs.py) and the user app's (tests/userapp/).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import redis


@lru_cache(maxsize=1)
def state_client() -> redis.Redis:
    """The job-state Redis (``DURABLE_REDIS_URL``), where bodies record their runs
    (through the sentinels' master when it is a ``sentinel://`` URL)."""
    from workers.core.store import connect

    password = os.environ.get("DURABLE_REDIS_SENTINEL_PASSWORD")
    return connect(os.environ["DURABLE_REDIS_URL"], socket_timeout=5,
                   sentinel_master=os.environ.get("DURABLE_REDIS_SENTINEL_MASTER"),
                   sentinel_password=password)  # fmt: skip


def ran(task: Any) -> int:
    """Count this attempt's body run and note when it started (Redis' clock, ms)."""
    attempt = int(task.attempt)
    client = state_client()
    seconds, micros = client.time()
    pipe = client.pipeline()
    pipe.hincrby(f"bodyruns:{task.request.id}", str(attempt), 1)
    pipe.hset(f"bodystart:{task.request.id}", str(attempt), seconds * 1000 + micros // 1000)
    replicas = int(os.environ.get("DURABLE_REDIS_MIN_REPLICAS") or 0)
    if replicas:
        pipe.wait(replicas, 2000)  # the count survives a failover as the transitions do
    pipe.execute()
    return attempt


def body_started_ms(client: redis.Redis, job_id: str, attempt: int) -> int | None:
    value = client.hget(f"bodystart:{job_id}", str(attempt))
    return int(value) if value is not None else None


def body_runs(client: redis.Redis, job_id: str) -> dict[int, int]:
    """attempt -> how many times its body ran."""
    return {int(k): int(v) for k, v in client.hgetall(f"bodyruns:{job_id}").items()}
