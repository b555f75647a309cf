"""Prometheus metrics, read from Redis at each scrape.

:class:`JobsCollector` is a custom collector: it holds no counters of its
own, so every worker (``DURABLE_METRICS_PORT``) and ``retryctl metrics`` serve
the same, cluster-wide numbers. A scrape costs a few round trips, whatever
the number of jobs:

- jobs by state: one ZCARD per index (running, waiting, parked, ended);
- waiting jobs by policy: the ``retrying`` count hash;
- failures by event, jobs gone dead, recoveries by kind: the ``stats``
  counter hash, which ``fail.lua`` increments inside the failure script and the sweeper after a
  pass that recovered something (never on the success path);
- stuck jobs: ZCARD of the stuck index;
- Redis calls refused (out of memory, read-only...), by reason: the stored
  ``refusals:<reason>`` counts plus this process's not yet stored ones
  (``workers.core.refusals``: nothing is written while Redis refuses writes);
- Redis memory used and ``maxmemory`` (INFO memory), so a full Redis is seen coming;
- live sweepers (heartbeats within a lease) and sweeper lag (how long the
  oldest due entry has been overdue: sweepers push every entry they take
  forward, so only an entry no sweeper reached is behind now): one round trip;
- oldest failure age by policy: ``first_failure_at`` of the live jobs, read
  in one pipelined HMGET each, all of them while an index holds at most
  ``sample`` entries, else a random sample of ``sample`` per index (then the
  figure is the oldest of the sample, a lower bound). About 1 ms per thousand
  jobs read; no per-job index is kept for it.

prometheus_client is imported on use, so a worker without metrics never loads it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import redis

from policies import Event
from workers.core.records import JobState
from workers.core.refusals import REASONS, Refusals, memory_use
from workers.core.settings import Settings
from workers.core.store import Store

log = logging.getLogger(__name__)

OLDEST_FAILURE_SAMPLE = 2000
DEFAULT_LEASE_SECONDS = Settings.model_fields["lease_seconds"].default
RECOVERY_KINDS = ("lease", "due", "unclaimed")

# Index name (Store.index_sizes) -> the state label it is counted under.
STATE_OF_INDEX = {
    "leases": JobState.RUNNING.value,
    "due": JobState.RETRYING.value,  # waiting jobs: retrying, and queued for their retry
    "unclaimed": JobState.QUEUED.value,  # first attempts not started yet
    "parked": JobState.PARKED.value,
    "succeeded": JobState.SUCCEEDED.value,
    "dead": JobState.DEAD.value,
    "killed": JobState.KILLED.value,
}


class JobsCollector:
    """Metrics of the jobs in one store, read at each scrape."""

    def __init__(
        self, store: Store, sample: int = OLDEST_FAILURE_SAMPLE, refusals: Refusals | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:  # fmt: skip
        self.store = store
        self.sample = sample
        self.refusals = refusals
        # A sweeper silent for a lease is taken for dead (as the sweepers themselves judge).
        self.lease_ms = int(lease_seconds * 1000)

    def describe(self) -> list[Any]:
        # Nothing to describe up front: registering must not touch Redis.
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        up = GaugeMetricFamily(
            "durable_redis_up", "1 if the last scrape could read the job state in Redis."
        )
        try:
            families = self._families(CounterMetricFamily, GaugeMetricFamily)
        except redis.RedisError as exc:
            log.warning("durable-retry: metrics scrape failed: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self, counter: Any, gauge: Any) -> list[Any]:
        store = self.store
        sizes = store.index_sizes()
        stats = store.stats()

        jobs = gauge("durable_jobs", "Jobs by state (retrying includes queued retries).",
                     labels=["state"])  # fmt: skip
        for index, state in STATE_OF_INDEX.items():
            jobs.add_metric([state], sizes[index])

        retrying = gauge(
            "durable_retrying_jobs", "Jobs waiting for a retry, by policy.", labels=["policy"]
        )
        for policy, count in sorted(store.retrying_counts().items()):
            retrying.add_metric([policy], max(count, 0))

        failures = counter(
            "durable_failures", "Failed attempts recorded, by event.", labels=["event"]
        )
        for event in Event:
            failures.add_metric([event.value], stats.get(f"failures:{event.value}", 0))

        dead = counter(
            "durable_dead",
            "Jobs whose policy gave up (they ended dead), counted inside the failure script.",
        )
        dead.add_metric([], stats.get("dead", 0))

        recoveries = counter(
            "durable_recoveries",
            "Work a sweeper recovered: lease (an attempt whose worker died, judged as a "
            "failure), due (a retry the sweeper published), unclaimed (a first attempt "
            "published again after a worker died or the safety time).",
            labels=["kind"],
        )
        for kind in RECOVERY_KINDS:
            recoveries.add_metric([kind], stats.get(f"recoveries:{kind}", 0))

        stuck = gauge("durable_stuck_jobs", "Jobs failing longer than their policy's alert_after.")
        stuck.add_metric([], sizes["stuck"])

        refused = counter(
            "durable_redis_refusals",
            "Redis calls refused while Redis answered (out-of-memory, read-only, misconf, "
            "no-replicas, busy, loading...): each waited and was tried again.",
            labels=["reason"],
        )
        for reason, n in sorted(self.refusal_counts(stats).items()):
            refused.add_metric([reason], n)

        memory = memory_use(store.redis)
        used = gauge("durable_redis_used_memory_bytes", "Memory the state Redis uses.")
        used.add_metric([], memory["used"])
        limit = gauge("durable_redis_maxmemory_bytes",
                      "The state Redis' maxmemory (0: no limit; writes are refused past it "
                      "under noeviction).")  # fmt: skip
        limit.add_metric([], memory["maxmemory"])

        paused = gauge(
            "durable_paused_jobs",
            "Waiting jobs a pause (retryctl pause) holds back until unpause releases them.",
        )
        paused.add_metric([], store.index_size(store.keys.deferred))

        live, overdue_ms = store.sweeper_health(self.lease_ms)
        sweepers = gauge(
            "durable_live_sweepers",
            "Sweepers (one per worker) that sent a heartbeat within a lease.",
        )
        sweepers.add_metric([], live)
        lag = gauge(
            "durable_sweeper_lag_seconds",
            "How long the oldest waiting retry has been due without a sweeper taking it "
            "(0 when none is overdue).",
        )
        lag.add_metric([], (overdue_ms or 0) / 1000)

        oldest = gauge(
            "durable_oldest_failure_age_seconds",
            "Age of the oldest failure streak among live jobs, by policy "
            f"(sampled above {self.sample} jobs per index).",
            labels=["policy"],
        )
        for policy, age in sorted(self.oldest_failure_ages().items()):
            oldest.add_metric([policy], age)
        return [
            jobs, retrying, failures, dead, recoveries, stuck, refused, used, limit, paused,
            sweepers, lag, oldest,
        ]  # fmt: skip

    def refusal_counts(self, stats: dict[str, int]) -> dict[str, int]:
        """reason -> refusals: stored, plus this process's not yet stored (every reason shown)."""
        counts = {reason: 0 for reason in REASONS.values()}
        if self.refusals is None:
            stored = stats
        else:
            with self.refusals.locked():  # a streak's counts move to Redis under this lock
                stored = self.store.stats()
                for reason, n in self.refusals.unstored().items():
                    counts[reason] = counts.get(reason, 0) + n
        for name, n in stored.items():
            if name.startswith("refusals:"):
                reason = name.removeprefix("refusals:")
                counts[reason] = counts.get(reason, 0) + n
        return counts

    def oldest_failure_ages(self) -> dict[str, float]:
        """policy -> seconds since the first failure of its oldest failing live job."""
        store = self.store
        keys = store.keys
        ids: list[str] = []
        for key in (keys.due, keys.parked, keys.leases):
            ids += store.sample_ids(key, self.sample)
        now_ms = store.now_ms()
        oldest: dict[str, float] = {}
        for policy, first in store.fields_of(ids, ("policy", "first_failure_at")):
            if policy is None or not first:
                continue
            age = max(0.0, (now_ms - int(first)) / 1000)
            oldest[policy] = max(oldest.get(policy, 0.0), age)
        return oldest


def serve(
    store: Store, port: int, host: str = "0.0.0.0", refusals: Refusals | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> Any:  # fmt: skip
    """Serve the metrics of ``store`` over HTTP on ``host:port`` from a daemon thread.

    ``refusals``: this process's, whose not yet stored counts are added;
    ``lease_seconds``: the workers' lease (a sweeper silent that long is not live).

    Returns the server (``server.server_address`` holds the port bound).
    """
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector(store, refusals=refusals, lease_seconds=lease_seconds))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
