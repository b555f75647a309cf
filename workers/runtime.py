"""The per-process pieces every part of a worker shares, made on first use.

Settings, the policy catalogue, the store and the lease keeper are built
lazily so that importing ``workers`` costs nothing and reads no environment
until a worker, a job or ``retryctl`` needs them; after a fork (prefork pool
children) the Redis connection pool and the lease thread are rebuilt.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import redis
from celery.exceptions import Reject

from policies import Catalog, load_catalog
from workers.leases import LeaseKeeper
from workers.settings import Settings, get_settings, redact_url
from workers.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Runtime:
    """What this process uses to talk to the job state."""

    settings: Settings

    @cached_property
    def store(self) -> Store:
        return Store.from_url(self.settings.redis_url, prefix=self.settings.key_prefix)

    @cached_property
    def catalog(self) -> Catalog:
        return load_catalog(self.settings.policy_file)

    @cached_property
    def leases(self) -> LeaseKeeper:
        return LeaseKeeper(self.store, self.settings.lease_seconds)

    @property
    def lease_ms(self) -> int:
        return int(self.settings.lease_seconds * 1000)

    def call_redis(self, action: Callable[[], T], what: str) -> T:
        """Run ``action``, retrying while Redis is unreachable, then hand the message back.

        Nothing about an attempt may be guessed without Redis, so after
        ``DURABLE_REDIS_WAIT_SECONDS`` the delivery is rejected with requeue:
        the broker delivers it again and the store decides then.
        """
        deadline = time.monotonic() + self.settings.redis_wait_seconds
        pause = 0.1
        while True:
            try:
                return action()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if time.monotonic() >= deadline:
                    log.error(
                        "durable-retry: Redis at %s unreachable while %s (%s); "
                        "handing the message back to the broker",
                        redact_url(self.settings.redis_url), what, exc,
                    )  # fmt: skip
                    raise Reject(f"Redis unreachable while {what}", requeue=True) from exc
                log.warning("durable-retry: Redis unreachable while %s: %s; retrying", what, exc)
                time.sleep(pause)
                pause = min(pause * 2, 2.0)


_runtime: Runtime | None = None
_runtime_pid: int | None = None


def runtime() -> Runtime:
    """This process's runtime (rebuilt in a forked child)."""
    global _runtime, _runtime_pid
    if _runtime is None or _runtime_pid != os.getpid():
        _runtime = Runtime(get_settings())
        _runtime_pid = os.getpid()
    return _runtime


def reset_runtime() -> None:
    """Forget settings and connections (tests that change the environment)."""
    global _runtime, _runtime_pid
    get_settings.cache_clear()
    _runtime = None
    _runtime_pid = None
