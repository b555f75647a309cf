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

# A Redis for the run counts other than the job state's: a failover test keeps them
# where the failover cannot lose them (asynchronous replication may drop the last
# writes of a killed master, the counts' with the transitions').
RUNS_URL = "TEST_BODY_RUNS_REDIS_URL"


@lru_cache(maxsize=1)
def runs_client() -> redis.Redis:
    """Where bodies record their runs: ``TEST_BODY_RUNS_REDIS_URL``, else the job state."""
    url = os.environ.get(RUNS_URL)
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=5) if url \
        else state_client()


@lru_cache(maxsize=1)
def state_client() -> redis.Redis:
    """The job-state Redis (``DURABLE_REDIS_URL``; through the sentinels' master when it
    is a ``sentinel://`` URL, a RedisCluster for ``redis+cluster://``)."""
    from workers.core.store import connect

    password = os.environ.get("DURABLE_REDIS_SENTINEL_PASSWORD")
    return connect(os.environ["DURABLE_REDIS_URL"], socket_timeout=5,
                   sentinel_master=os.environ.get("DURABLE_REDIS_SENTINEL_MASTER"),
                   sentinel_password=password)  # fmt: skip


def ran(task: Any) -> int:
    """Count this attempt's body run and note when it started (Redis' clock, ms)."""
    attempt = int(task.attempt)
    client = runs_client()
    seconds, micros = client.time()
    pipe = client.pipeline()
    pipe.hincrby(f"bodyruns:{task.request.id}", str(attempt), 1)
    pipe.hset(f"bodystart:{task.request.id}", str(attempt), seconds * 1000 + micros // 1000)
    replicas = int(os.environ.get("DURABLE_REDIS_MIN_REPLICAS") or 0)
    if replicas and not os.environ.get(RUNS_URL):
        pipe.wait(replicas, 2000)  # the count survives a failover as the transitions do
    pipe.execute()
    return attempt


def body_started_ms(client: redis.Redis, job_id: str, attempt: int) -> int | None:
    value = client.hget(f"bodystart:{job_id}", str(attempt))
    return int(value) if value is not None else None


def body_runs(client: redis.Redis, job_id: str) -> dict[int, int]:
    """attempt -> how many times its body ran."""
    return {int(k): int(v) for k, v in client.hgetall(f"bodyruns:{job_id}").items()}
