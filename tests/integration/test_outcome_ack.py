"""With the broker on the store's Redis, the script that records an attempt's
outcome acks its message, and the worker's own ack leaves Redis alone.

kombu's Redis transport keeps each delivered, unacked message in two keys
(``unacked_index``, ``unacked``) and removes it on ack. Here a real worker
(solo, prefork, threads) runs a job that succeeds and one that fails once, and the
server's own MONITOR stream says who removed each delivery: the ``succeed``
and ``fail`` scripts, never a client's MULTI/EXEC. With the broker on another
database the worker acks as kombu does. Either way nothing is left unacked
after a warm shutdown, and no body ran twice.
"""

from __future__ import annotations

import time

import pytest
from celery import Celery

from tests import jobs
from tests.conftest import wait_for
from tests.support.monitor import commands_during
from tests.support.records import in_state
from workers import JobState

pytestmark = pytest.mark.integration


def _run_three_attempts(worker) -> tuple[str, str]:
    """A job that succeeds and one that fails once then succeeds; then a warm shutdown,
    after which every ack Celery makes has been made."""
    ok = jobs.add.delay(1, 2).id
    flaky = jobs.flaky.delay(1).id
    for job_id in (ok, flaky):
        wait_for(lambda j=job_id: in_state(j, JobState.SUCCEEDED), 60, f"job {job_id} to succeed")
    worker.stop()
    return ok, flaky


def _removals(seen: list[dict], client_type: str) -> list[tuple[str, str]]:
    """(command, key) of each removal from kombu's unacked keys by ``client_type``."""
    out = []
    for command in seen:
        words = command["command"].split()
        if command["client_type"] == client_type and len(words) > 1 and (
            words[0] in ("ZREM", "HDEL") and words[1] in ("unacked_index", "unacked")
        ):
            out.append((words[0], words[1]))
    return out


@pytest.mark.parametrize("pool", ["solo", "prefork", "threads"])
def test_each_outcome_script_acks_its_delivery_and_the_worker_does_not_again(
    redis_client, redis_server, start_worker, pool
):
    worker = start_worker("w1", pool=pool, concurrency=1 if pool == "solo" else 2)
    warm = jobs.add.delay(0, 0).id  # connections and scripts, outside what is watched
    wait_for(lambda: in_state(warm, JobState.SUCCEEDED), 60, "the first job to succeed")
    wait_for(lambda: redis_client.hlen("unacked") == 0, 30, "the first job's ack")
    ids: list[str] = []
    seen = commands_during(redis_server, lambda: ids.extend(_run_three_attempts(worker)))
    ok, flaky = ids
    assert jobs.body_runs(redis_client, ok) == {1: 1}
    assert jobs.body_runs(redis_client, flaky) == {1: 1, 2: 1}
    # Three deliveries (ok; flaky's two attempts), each tracked by kombu as it came...
    delivered = [c for c in seen if c["client_type"] == "tcp"
                 and c["command"].startswith("ZADD unacked_index ")]  # fmt: skip
    assert len(delivered) == 3, delivered
    # ...and each removed by its outcome script (succeed, fail, succeed), by no client.
    assert _removals(seen, "lua") == [("ZREM", "unacked_index"), ("HDEL", "unacked")] * 3
    assert _removals(seen, "tcp") == []
    assert redis_client.hlen("unacked") == 0 and redis_client.zcard("unacked_index") == 0


def test_a_broker_on_another_database_is_acked_by_the_worker_as_kombu_does(
    redis_client, redis_server, start_worker
):
    broker = redis_server.url.rsplit("/", 1)[0] + "/1"
    worker = start_worker("w1", pool="solo", concurrency=1, env={"DURABLE_BROKER_URL": broker})
    # Published by name on database 1, as another producer would: the worker makes
    # the record from the message when it claims it.
    producer = Celery(broker=broker)
    producer.conf.update(task_serializer="json", accept_content=["json"])
    job_id = f"other-db-{time.time_ns()}"
    seen = commands_during(redis_server, lambda: (
        producer.send_task("tests.jobs.add", (1, 2), task_id=job_id),
        wait_for(lambda: in_state(job_id, JobState.SUCCEEDED), 60, "the job to succeed"),
        worker.stop(),
    ))  # fmt: skip
    assert jobs.body_runs(redis_client, job_id) == {1: 1}
    assert _removals(seen, "lua") == []
    assert ("ZREM", "unacked_index") in _removals(seen, "tcp")
    other = redis_server.client(db=1)
    assert other.hlen("unacked") == 0 and other.zcard("unacked_index") == 0
