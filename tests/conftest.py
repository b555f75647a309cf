"""The real-service test harness: a Redis server and Celery workers the tests own.

One Redis server per test session, on a free loopback port with its own data
directory (never the machine's Redis on 6379); every integration test starts
from an empty database. Workers are real ``celery worker`` processes in their
own process groups, or an in-process worker for fast tests.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.redis_guard import assert_empty
from tests.support.worker_process import ROOT, WorkerProcess
from workers.ops.embedded_redis import RedisServer

TESTS = Path(__file__).resolve().parent

# Short leases and sweeps make recovery happen now, not "eventually"
# (dramatiq's trick): a dead worker's job is recovered within seconds.
TEST_SETTINGS = {
    "DURABLE_POLICY_FILE": str(TESTS / "policies.yaml"),
    "DURABLE_LEASE_SECONDS": "3",
    "DURABLE_SWEEP_SECONDS": "0.5",
    "DURABLE_MAX_COUNTDOWN": "3.5",
    "DURABLE_REDIS_WAIT_SECONDS": "20",
    # The names new records are written with: long (the default) or, in CI's
    # second pass (TEST_RECORD_FIELDS=short), short. Both are always read.
    "DURABLE_RECORD_FIELDS": os.environ.get("TEST_RECORD_FIELDS", "long"),
}

_session: dict[str, Any] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run the long profiles")


def pytest_configure(config: pytest.Config) -> None:
    # Under pytest-xdist every worker process gets its own Redis.
    base = Path(tempfile.mkdtemp(prefix="durable-tests-"))
    server = RedisServer(base / "redis")
    server.start()
    assert_empty(server.client())
    _session.update(server=server, base=base)
    for name in [n for n in os.environ if n.startswith("DURABLE_")]:
        del os.environ[name]
    os.environ.update(TEST_SETTINGS)
    os.environ["DURABLE_REDIS_URL"] = server.url


def pytest_unconfigure(config: pytest.Config) -> None:
    server = _session.get("server")
    if server is not None:
        server.kill()
        shutil.rmtree(_session["base"], ignore_errors=True)


# The longest test files, longest first. ``./run test`` hands whole files to its
# three processes in collection order; started first, a long file runs beside the
# rest instead of alone at the end.
LONGEST_FIRST = (
    "tests/test_bench_smoke.py",  # (when selected: -m bench)
    "tests/integration/test_cluster.py",
    "tests/integration/test_sentinel.py",
)

# Tests that run only when their marker is selected (``-m deploy``, ``-m bench``):
# each takes minutes, and .ci/run runs it as a step of its own.
SELECTED_ONLY = {
    "deploy": "deploy test (builds the image, runs docker-compose.yml under podman): "
    "run with ./run test -m deploy tests/deploy -n 0",
    "bench": "bench smoke (every scenario of ./run bench, tiny; a few minutes): "
    "run with ./run test -m bench tests/test_bench_smoke.py",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file, and of the rest, is kept
    selected = config.getoption("markexpr") or ""
    skips = {
        marker: pytest.mark.skip(reason=reason)
        for marker, reason in SELECTED_ONLY.items()
        if marker not in selected
    }
    if not config.getoption("--slow"):
        skips["slow"] = pytest.mark.skip(reason="long profile: run with --slow")
    for item in items:
        for marker, skip in skips.items():
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def redis_server() -> RedisServer:
    server: RedisServer = _session["server"]
    return server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the session's Redis, emptied before the test."""
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()  # an earlier test killed it
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def worker_env(redis_server: RedisServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
    env.update(TEST_SETTINGS)
    env["DURABLE_REDIS_URL"] = redis_server.url
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def start_worker(
    worker_env: dict[str, str], tmp_path: Path, redis_client: redis.Redis
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``celery worker`` subprocesses; every one is SIGKILLed at teardown."""
    started: list[WorkerProcess] = []

    def start(name: str = "w1", wait: bool = True, env: dict[str, str] | None = None,
              **options: Any) -> WorkerProcess:  # fmt: skip
        worker = WorkerProcess(
            {**worker_env, **(env or {})}, tmp_path / f"{name}.log", name=name, **options
        )
        started.append(worker)
        worker.start(wait=wait)
        return worker

    yield start
    for worker in started:
        worker.kill()


@pytest.fixture
def inprocess_worker(redis_client: redis.Redis) -> Iterator[Any]:
    """A solo-pool worker in a thread of the test process; its durable step runs the
    sweeper and installs the revoke hook, as in a ``celery worker`` process."""
    from celery.contrib.testing.worker import start_worker as celery_start_worker

    import tests.jobs  # noqa: F401  (registers the jobs)
    from workers import app

    with celery_start_worker(
        app, pool="solo", concurrency=1, perform_ping_check=False, shutdown_timeout=10
    ) as worker:
        yield worker


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll until ``predicate()`` is truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
