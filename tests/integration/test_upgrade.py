"""Stored state outlives releases: jobs whose state the previous release's scripts
wrote (tests/fixtures/release_0_1: its claim and fail, unchanged) run to the end
with this release's workers and sweepers.

That release made a record at the first claim (no ``opts``, no ``unclaimed``
entry) and published messages without the options of the first enqueue.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import redis

from tests import jobs
from tests.conftest import wait_for
from tests.support.ops import control, runtime
from tests.support.records import in_state
from workers import JobState

OLD = Path(__file__).resolve().parents[1] / "fixtures" / "release_0_1"
OWNER = "old-worker@host:4242"


def _old_script(client: redis.Redis, name: str) -> redis.commands.core.Script:
    return client.register_script((OLD / f"{name}.lua").read_text())


def _old_claim(client: redis.Redis, job_id: str, task: str, args: str, lease_ms: int) -> None:
    keys = runtime().store.keys
    reply = _old_script(client, "claim")(
        keys=[keys.job(job_id), keys.due, keys.leases, keys.retrying],
        args=[job_id, 1, task, "fast", OWNER, lease_ms, args, "{}", "celery"],
    )
    assert reply[0] == "ok", reply


def _old_fail(client: redis.Redis, job_id: str, delay_ms: int, grace_ms: int) -> None:
    keys = runtime().store.keys
    reply = _old_script(client, "fail")(
        keys=[
            keys.job(job_id), keys.leases, keys.due, keys.retrying, keys.parked,
            keys.ended(JobState.DEAD), keys.stats, keys.stuck,
        ],
        args=[job_id, 1, OWNER, "error", "ConnectionError: old release", "r", "retry",
              delay_ms, grace_ms, -1, 86_400_000],
    )  # fmt: skip
    assert reply[0] == "retry", reply


def test_jobs_written_by_the_previous_release_run_to_the_end(redis_client, start_worker):
    # 1. A retry waiting in the due set only (a long delay), due now.
    waiting = str(uuid.uuid4())
    _old_claim(redis_client, waiting, "tests.jobs.add", "[1, 2]", 60_000)
    _old_fail(redis_client, waiting, delay_ms=0, grace_ms=0)
    # 2. A countdown retry whose worker died holding its message (held, then a death).
    held = str(uuid.uuid4())
    _old_claim(redis_client, held, "tests.jobs.add", "[3, 4]", 60_000)
    _old_fail(redis_client, held, delay_ms=0, grace_ms=1)
    redis_client.set(runtime().store.keys.last_death, 2**50)
    # 3. An attempt running on a worker of that release that died: its lease ran out.
    running = str(uuid.uuid4())
    _old_claim(redis_client, running, "tests.jobs.add", "[5, 6]", 1)

    start_worker("new")
    for job_id in (waiting, held, running):
        wait_for(lambda j=job_id: in_state(j, JobState.SUCCEEDED), 60, f"{job_id} to succeed")
    # The old release ran attempt 1 (no body run recorded here); this one ran attempt 2.
    for job_id in (waiting, held, running):
        record = control.status(job_id)
        assert record is not None and record.attempts == 2
        assert jobs.body_runs(redis_client, job_id) == {2: 1}
    assert control.status(running).failures == {"interruption": 1}
