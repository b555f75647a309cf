"""Prometheus metrics, scraped over HTTP on loopback, against jobs the test made."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_for
from tests.integration.test_cli_jobs import OWNER, closed_port, make_job
from tests.support.ops import runtime
from tests.support.worker_process import ROOT
from workers import JobState, app, durable_of
from workers.core.outcomes import Payload
from workers.core.store import Claimed, Store
from workers.ops.metrics import JobsCollector

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return runtime().store


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def metrics_server(redis_server) -> Iterator[int]:
    """``retryctl metrics`` as a subprocess on a free loopback port; yields the port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
    env["DURABLE_REDIS_URL"] = redis_server.url
    retryctl = os.path.join(os.path.dirname(sys.executable), "retryctl")
    process = subprocess.Popen(
        [retryctl, "metrics", "--port", "0", "--host", "127.0.0.1"], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "/metrics" in line, (line, process.communicate()[1] if process.poll() else "")
        yield int(line.split("http://127.0.0.1:")[1].split("/")[0])
    finally:
        process.terminate()
        process.wait(10)


def test_metrics_served_by_retryctl_count_the_jobs_created(store, metrics_server):
    # A running attempt whose worker died: the sweeper recovers it as an interruption.
    lost = "lost-attempt-1"
    claimed = store.claim(lost, 1, task="tests.jobs.kills_once", policy="three-tries",
                          owner=OWNER, lease_ms=1, payload=Payload("[]", "{}", ""))  # fmt: skip
    assert isinstance(claimed, Claimed)
    time.sleep(0.01)
    report = durable_of(app).sweeper(owner="metrics-test").run_once()
    assert report.recovered == 1
    for _ in range(2):
        make_job(store, JobState.RETRYING, policy="fast-forever", failures=2)
    make_job(store, JobState.RETRYING, policy="fast-forever", event="no-capacity")
    stuck = make_job(store, JobState.RETRYING, policy="three-tries")
    # (made after the sweep, which would unpark it: its policy has room)
    make_job(store, JobState.PARKED, policy="capped")
    make_job(store, JobState.DEAD)
    make_job(store, JobState.SUCCEEDED)
    make_job(store, JobState.KILLED)
    store.mark_stuck(stuck, 0)

    samples = scrape(metrics_server)

    assert value(samples, "durable_redis_up") == 1
    jobs = {state: value(samples, "durable_jobs", state=state) for state in
            ("running", "retrying", "parked", "succeeded", "dead", "killed")}  # fmt: skip
    assert jobs == {"running": 0, "retrying": 5, "parked": 1, "succeeded": 1, "dead": 1,
                    "killed": 1}  # fmt: skip
    assert value(samples, "durable_retrying_jobs", policy="fast-forever") == 3
    assert value(samples, "durable_retrying_jobs", policy="three-tries") == 2
    # error: 2 x 2 retrying, 1 three-tries, 1 parked, 1 dead
    assert value(samples, "durable_failures_total", event="error") == 7
    assert value(samples, "durable_failures_total", event="no-capacity") == 1
    assert value(samples, "durable_failures_total", event="interruption") == 1
    assert value(samples, "durable_failures_total", event="timeout") == 0
    assert value(samples, "durable_dead_total") == 1
    assert value(samples, "durable_recoveries_total", kind="lease") == 1
    assert value(samples, "durable_recoveries_total", kind="due") == 0
    assert value(samples, "durable_stuck_jobs") == 1
    for policy in ("fast-forever", "three-tries", "capped"):
        age = value(samples, "durable_oldest_failure_age_seconds", policy=policy)
        assert age is not None and 0 <= age < 60, policy
    assert value(samples, "durable_oldest_failure_age_seconds", policy="fast") is None


def test_a_worker_with_a_metrics_port_serves_them(store, start_worker):
    port = closed_port()
    start_worker(env={"DURABLE_METRICS_PORT": str(port)})
    make_job(store, JobState.DEAD)

    samples = wait_for(lambda: _try_scrape(port), 15, "the worker's metrics endpoint")

    assert value(samples, "durable_redis_up") == 1
    assert value(samples, "durable_jobs", state="dead") == 1
    wait_for(lambda: value(_try_scrape(port) or {}, "durable_live_sweepers") == 1, 15,
             "the worker's sweeper to count as live")  # fmt: skip


def collected(collector: JobsCollector) -> dict[str, float]:
    """Unlabelled samples of one collection, by name."""
    return {
        sample.name: sample.value
        for family in collector.collect()
        for sample in family.samples
        if not sample.labels
    }


def test_live_sweepers_are_those_that_beat_within_a_lease(store, redis_client):
    collector = JobsCollector(store, lease_seconds=30)
    assert collected(collector)["durable_live_sweepers"] == 0
    store.heartbeat("w1@a", 30_000)
    store.heartbeat("w2@b", 30_000)
    # A node whose sweeper went silent two leases ago, and no live sweeper removed it
    # (every worker died at once): it is not live.
    redis_client.zadd(store.keys.nodes, {"w3@gone": store.now_ms() - 60_000})

    assert collected(collector)["durable_live_sweepers"] == 2


def test_sweeper_lag_is_how_long_the_oldest_retry_is_overdue_until_a_sweeper_takes_it(
    store, redis_client
):
    collector = JobsCollector(store)
    job_id = make_job(store, JobState.RETRYING, delay_ms=600_000)
    assert collected(collector)["durable_sweeper_lag_seconds"] == 0  # due in 10 minutes
    # Due a minute ago, and no sweeper has run since.
    redis_client.zadd(store.keys.due, {job_id: store.now_ms() - 60_000})

    lag = collected(collector)["durable_sweeper_lag_seconds"]
    assert 60 <= lag < 600, lag

    store.take_due(100, 30_000)  # a sweeper pass takes it
    assert collected(collector)["durable_sweeper_lag_seconds"] == 0


def _try_scrape(port: int) -> Samples | None:
    try:
        return scrape(port)
    except OSError:
        return None


def test_a_scrape_while_redis_is_unreachable_reports_redis_down(redis_client):
    collector = JobsCollector(Store.from_url(f"redis://127.0.0.1:{closed_port()}/0"))
    families = {family.name: family for family in collector.collect()}
    assert list(families) == ["durable_redis_up"]
    assert families["durable_redis_up"].samples[0].value == 0
