"""retryctl list over 100,000 retrying jobs: it reads indexes, never scans keys.

No timing assertion (the machine is shared); the figures are printed (run
with ``-s``) and recorded in docs/OPERATIONS.md. The jobs are written in a
pipeline straight into the store's key layout (``Store.keys``), as the claim
and fail scripts would leave them, because running 100,000 real failures
would take minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import redis
from click.testing import CliRunner

from tests.support.ops import runtime
from tests.support.worker_process import ROOT
from workers.core.records import JobState
from workers.core.store import Store
from workers.ops.cli import cli

pytestmark = pytest.mark.integration

# The figure is at 100,000 jobs (--slow, reported in docs/OPERATIONS.md);
# the default run proves the same behaviour at a size that costs 2 s.
JOBS_SLOW = 100_000
JOBS = 20_000
BATCH = 5_000


def write_retrying_jobs(store: Store, count: int, policy: str = "fast-forever") -> None:
    """``count`` retrying jobs in the store's layout (each in its shard), due over the next
    ``count`` seconds."""
    now = store.now_ms()
    for start in range(0, count, BATCH):
        pipe = store.redis.pipeline(transaction=False)
        waiting: dict[str, int] = {}  # retrying-count key (one per shard) -> jobs added
        for n in range(start, min(start + BATCH, count)):
            job_id = f"bulk-{n:06d}"
            keys = store.layout.of(job_id)
            due = now + 1000 * (n + 1)
            pipe.hset(keys.job(job_id), mapping={
                "task": "tests.jobs.always_fails", "policy": policy, "state": "retrying",
                "attempt": 3, "streak_base": 0, "created_at": now, "updated_at": now,
                "first_failure_at": now - 60_000, "last_failure_at": now,
                "next_attempt_at": due, "last_event": "error",
                "last_error": "ConnectionError: upstream timed out", "reason": "retry",
                "failures:error": 3, "since:error": now - 60_000,
                "args": f'["account-{n}"]', "kwargs": "{}", "queue": "celery",
            })  # fmt: skip
            pipe.zadd(keys.due, {job_id: due})
            waiting[keys.retrying] = waiting.get(keys.retrying, 0) + 1
        for key, added in waiting.items():
            pipe.hincrby(key, policy, added)
        pipe.execute()


def test_list_of_a_large_retrying_index_reads_only_the_first_page(
    redis_client: redis.Redis, request: pytest.FixtureRequest
):
    jobs_count = JOBS_SLOW if request.config.getoption("--slow") else JOBS
    store = runtime().store
    started = time.perf_counter()
    write_retrying_jobs(store, jobs_count)
    setup = time.perf_counter() - started
    # One job of a rare policy, at the far end of the due index.
    write_rare = store.redis.pipeline()
    write_rare.hset(store.keys.job("rare-1"), mapping={
        "task": "tests.jobs.always_fails", "policy": "rare", "state": "retrying",
        "attempt": 1, "next_attempt_at": store.now_ms() + 10**9,
    })  # fmt: skip
    write_rare.zadd(store.keys.due, {"rare-1": store.now_ms() + 10**9})
    write_rare.execute()
    assert store.index_size(store.index_key(JobState.RETRYING)) == jobs_count + 1

    runner = CliRunner()
    started = time.perf_counter()
    result = runner.invoke(cli, ["list"])
    in_process = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    assert result.stdout.count("bulk-") == 50
    assert "bulk-000000" in result.stdout  # soonest due first

    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
    env["DURABLE_REDIS_URL"] = os.environ["DURABLE_REDIS_URL"]
    retryctl = os.path.join(os.path.dirname(sys.executable), "retryctl")
    started = time.perf_counter()
    process = subprocess.run([retryctl, "list", "--json"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    console_script = time.perf_counter() - started
    assert process.returncode == 0, process.stderr
    assert len(json.loads(process.stdout)) == 50

    # A filter that matches one job at the far end reads the whole index.
    started = time.perf_counter()
    filtered = runner.invoke(cli, ["list", "--policy", "rare", "--json"])
    full_read = time.perf_counter() - started
    assert [job["id"] for job in json.loads(filtered.stdout)] == ["rare-1"]

    print(
        f"\n{jobs_count} retrying jobs written in {setup:.2f}s; retryctl list: {in_process:.3f}s "
        f"in process, {console_script:.3f}s as a console script (Python start included); "
        f"list --policy matching one job at the end of the index: {full_read:.2f}s"
    )
