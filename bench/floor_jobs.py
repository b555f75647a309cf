"""The floor side (``celery -A bench.floor_jobs worker``): plain Celery plus the layer's
two round trips and its kombu client reuse, and nothing else.

The invariants keep two blocking Redis round trips per attempt that plain Celery
does not make: ``claim`` before the body (fencing) and ``succeed`` or ``fail`` after it
(the outcome recorded before the ack). This side is plain Celery's jobs
(:mod:`bench.plain_jobs`, the same names, the same configuration) with two bare
``EVALSHA`` round trips through redis-py around each attempt's body
(:func:`bench.round_trips.with_two_round_trips`). What durable-retry costs beyond
this side is its own work; what this side costs beyond plain Celery no tuning of the
layer removes. It also reuses kombu's redis-py clients as the layer's workers and
producers do (workers/integration/patches/client_reuse.py): that patch speeds up
anything kombu sends on Redis, plain jobs too, so the floor has it and the layer's
own cost is what the durable side costs beyond this one. The bench runs it beside
the other two sides (scenarios 1 and 2), so each figure's floor is measured in the
same run; ``python -m bench.cost`` runs the same side as variant ``floor``.
"""

from __future__ import annotations

import os

import redis

from bench import plain_jobs
from bench.plain_jobs import app
from bench.round_trips import with_two_round_trips
from workers.integration.patches.client_reuse import reuse_channel_clients

__all__ = ["JOBS", "app"]

# The plain jobs the bench drains on this side (scenarios 1 and 2).
JOBS = ("noop", "fail_once_0s", "fail_once_1s")


def _wrap_jobs() -> None:
    url = os.environ.get("BENCH_REDIS_URL")
    if not url:
        return  # imported outside a bench process (a producer gets the URL too)
    reuse_channel_clients()
    client = redis.Redis.from_url(url)
    for name in JOBS:
        # A lazy task (PromiseProxy) until evaluated.
        with_two_round_trips(getattr(plain_jobs, name)._get_current_object(), client)


_wrap_jobs()
noop = plain_jobs.noop
fail_once_0s = plain_jobs.fail_once_0s
fail_once_1s = plain_jobs.fail_once_1s
