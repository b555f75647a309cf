"""What bench job bodies record in Redis (the same calls on both sides).

Times are Redis' clock (``TIME``), as due times and leases are.
"""

from __future__ import annotations

import os
from datetime import datetime
from functools import lru_cache

import redis

LATENESS_KEY = "bench:lateness"


def start_key(job_id: str) -> str:
    return f"bench:start:{job_id}"


@lru_cache(maxsize=1)
def _client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["BENCH_REDIS_URL"], decode_responses=True)


def redis_now_ms() -> int:
    seconds, micros = _client().time()
    return int(seconds) * 1000 + int(micros) // 1000


def due_key(job_id: str) -> str:
    return f"bench:due:{job_id}"


def record_due_iso(job_id: str, eta: str | None) -> None:
    """The ETA (ms) a plain Celery retry carried: its due time, for scenario 10."""
    if eta is not None:
        _client().set(due_key(job_id), int(datetime.fromisoformat(eta).timestamp() * 1000))


def record_lateness(due_ms: float) -> None:
    """How late (ms) this body started after its due time."""
    _client().rpush(LATENESS_KEY, redis_now_ms() - due_ms)


def record_lateness_iso(eta: str | None) -> None:
    if eta is None:
        return
    due_ms = datetime.fromisoformat(eta).timestamp() * 1000
    record_lateness(due_ms)


def record_start(job_id: str, attempt: int, hostname: str | None) -> None:
    """When and where attempt ``attempt`` of the job started."""
    _client().hset(start_key(job_id), str(attempt), f"{redis_now_ms()}|{hostname}")
