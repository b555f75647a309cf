"""Scenario 11: the job state on one Redis against a 3-master Redis Cluster (issue 14).

Both sides run the same sharded key layout (64 shards, the cluster default) and
the real store methods, one call per round trip as a worker makes them, from a
few client threads: enqueue, claim, fail (a retry), claim, succeed: five
transitions per job. This machine has 2 cores, so a wall-clock speed-up cannot
show; what the scenario shows is where the Redis CPU goes: per transition, and
per master (INFO cpu of each node, before and after). Then the sweeper's claim
rate at a large due set spread over the shards (take_due then dispatched, the
sweeper's own calls, without publishing).

Neither side persists (appendonly no), as the bench's own Redis.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

from bench.harness import load, median
from bench.report import Row, Section
from bench.state import LEASE_MS, POLICY, RETENTION_MS, TASK, job_ids, typical_failure
from tests.support.cluster import Cluster, find_redis_cli
from workers.core.outcomes import Claimed, Payload
from workers.core.store import Store, connect
from workers.ops.embedded_redis import RedisServer, RedisServerError

SHARDS = 64
THREADS = 4
OWNER = "bench@host:4242"


def cluster_unavailable() -> str | None:
    """Why this machine's redis-server cannot run the scenario's cluster, or None."""
    try:
        find_redis_cli()
        with tempfile.TemporaryDirectory(prefix="bench-cluster-probe-") as tmp:
            if "cluster_enabled:1" not in Cluster(Path(tmp))._probe_support():
                return "this redis-server does not run in cluster mode"
    except RedisServerError as exc:
        return str(exc)
    return None


def _cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _job_life(store: Store, job_id: str, error: str, reason: str) -> None:
    """One job's five transitions, each its own round trip."""
    store.enqueue(job_id, task=TASK, policy=POLICY.name, payload=Payload("[1]", "{}", "celery"))
    for attempt, last in ((1, False), (2, True)):
        claimed = store.claim(job_id, attempt, task=TASK, policy=POLICY.name, owner=OWNER,
                              lease_ms=LEASE_MS, payload=None, token="t")  # fmt: skip
        if not isinstance(claimed, Claimed):
            raise RuntimeError(f"job {job_id}: claim {attempt} answered {claimed}")
        if last:
            store.succeed(job_id, attempt, OWNER, RETENTION_MS, history=0)
        else:
            store.fail(job_id, attempt, OWNER, event="error", error=error, reason=reason,
                       give_up=False, delay_ms=0, max_retrying=None,
                       retention_ms=RETENTION_MS, history=0)  # fmt: skip


def transitions(store: Store, nodes: list[redis.Redis], n: int) -> dict[str, Any]:
    """Run ``n`` jobs' lives from THREADS threads; rate and Redis CPU per master."""
    failure, reason = typical_failure()
    ids = job_ids(n, prefix="t")
    chunks = [ids[i::THREADS] for i in range(THREADS)]
    errors: list[BaseException] = []

    def work(chunk: list[str]) -> None:
        try:
            for job_id in chunk:
                _job_life(store, job_id, failure.message, reason)
        except BaseException as exc:  # reported below
            errors.append(exc)

    before = [_cpu_seconds(node) for node in nodes]
    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    used = [_cpu_seconds(node) - b for node, b in zip(nodes, before, strict=True)]
    count = 5 * n
    return {
        "rate": count / wall,
        "cpu_us": sum(used) * 1e6 / count,
        "shares": [u / sum(used) for u in used] if sum(used) else [0.0] * len(used),
    }


def claim_rate(store: Store, nodes: list[redis.Redis], due: int, claim: int) -> float:
    """Fill the due sets to ``due`` entries (the first ``claim`` + 500 real retrying
    jobs made by the scripts), then take and dispatch until ``claim`` are claimed."""
    failure, reason = typical_failure()
    real = job_ids(claim + 500, prefix="r")
    for job_id in real:
        store.claim(job_id, 1, task=TASK, policy=POLICY.name, owner=OWNER, lease_ms=LEASE_MS,
                    payload=Payload("[1]", "{}", "celery"))  # fmt: skip
        store.fail(job_id, 1, OWNER, event="error", error=failure.message, reason=reason,
                   give_up=False, delay_ms=0, max_retrying=None, retention_ms=RETENTION_MS,
                   history=0)  # fmt: skip
    time.sleep(0.01)
    later = store.now_ms() + 60_000
    filler = job_ids(due - len(real), prefix="f")
    by_shard: dict[int, list[str]] = {}
    for job_id in filler:
        by_shard.setdefault(store.layout.shard_of(job_id), []).append(job_id)
    for shard, members in by_shard.items():
        key = store.layout.shard(shard).due
        for i in range(0, len(members), 5000):
            store.redis.zadd(key, {m: later for m in members[i : i + 5000]})
    claimed, passes = 0, 0
    started = time.perf_counter()
    while claimed < claim:
        _, ids = store.take_due(store.per_shard_limit(500), redispatch_ms=LEASE_MS)
        claimed += sum(1 for job in store.dispatched(ids) if job.state == "queued")
        passes += 1
        if passes > 10 * claim:
            raise RuntimeError("the due sets ran dry")
    return claimed / (time.perf_counter() - started)


def _unpersisted(nodes: list[redis.Redis]) -> None:
    for node in nodes:
        node.config_set("appendonly", "no")


def one_against_three(jobs: int, due: int, claim: int, runs: int) -> Section:
    section = Section(
        "11. One Redis against a 3-master Redis Cluster", load_before=load(),
        settings=f"Job state only (no broker, no worker): both sides on the sharded layout "
        f"({SHARDS} shards), without persistence; {jobs:,} jobs x 5 transitions (enqueue, "
        f"claim, fail with a retry, claim, succeed) through the real Store methods, one "
        f"round trip each, from {THREADS} client threads; Redis CPU = INFO used_cpu_sys + "
        f"used_cpu_user of every master, before and after; {runs} runs each, medians. "
        f"Claim rate: {due:,} due entries over the shards ({claim + 500:,} real retrying "
        f"jobs, the rest filler due later), take_due + dispatched until {claim:,} are "
        "claimed.",
    )  # fmt: skip
    unavailable = cluster_unavailable()
    if unavailable:
        section.details.append(f"- skipped: {unavailable}")
        return section
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        single = RedisServer(Path(tmp) / "single", appendonly=False)
        cluster = Cluster(Path(tmp) / "cluster", masters=3)
        try:
            single.start()
            cluster.start()
            masters = [node.client() for node in cluster.nodes]
            _unpersisted(masters)
            sides = {
                "1 Redis": (Store(single.client(), shards=SHARDS), [single.client()]),
                "3 masters": (Store(connect(cluster.url), shards=SHARDS), masters),
            }
            figures: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
            for _ in range(runs):
                for name, (store, nodes) in sides.items():
                    for node in nodes:
                        node.flushall()
                    figures[name].append(transitions(store, nodes, jobs))
            for name, runs_of in figures.items():
                rate = median([f["rate"] for f in runs_of])
                cpu = median([f["cpu_us"] for f in runs_of])
                shares = [median([f["shares"][i] for f in runs_of])
                          for i in range(len(runs_of[0]["shares"]))]  # fmt: skip
                section.rows += [
                    Row("11", f"state transitions/s, {name}", rate, None, unit="/s",
                        note="n/a (job state only)"),
                    Row("11", f"Redis CPU per transition, {name}", cpu, None, unit="µs",
                        note="n/a"),
                ]  # fmt: skip
                section.details.append(
                    f"- {name}: Redis CPU per master " + ", ".join(f"{s:.0%}" for s in shares)
                )
                if len(shares) > 1:
                    section.rows.append(Row(
                        "11", f"busiest master's share of the Redis CPU, {name}",
                        100 * max(shares), None, unit="%", bar="<= 45% (spread over 3)",
                        rule="<=45", note="n/a",
                    ))  # fmt: skip
            for name, (store, nodes) in sides.items():
                for node in nodes:
                    node.flushall()
                rate = claim_rate(store, nodes, due, claim)
                section.rows.append(Row("11", f"sweeper claim rate, {due:,} due, {name}", rate,
                                        None, unit="jobs/s", note="n/a"))  # fmt: skip
                for node in nodes:
                    node.flushall()
        finally:
            cluster.stop()
            single.kill()
    section.load_after = load()
    return section
