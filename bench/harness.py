"""The bench's own Redis and workers, and the measurements shared by scenarios.

One ``redis-server`` without persistence (no AOF, no RDB) on a free port,
emptied before every run; workers are real ``celery worker`` subprocesses
(:class:`tests.support.worker_process.WorkerProcess`, the harness the tests
use), each in its own process group. Nothing here reads or changes this
process's ``DURABLE_*`` environment: every setting is handed to the workers.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from bench.plain_jobs import PLAIN_CONFIG
from tests.support.worker_process import ROOT, WorkerProcess
from workers.core.store import Store
from workers.ops.embedded_redis import RedisServer

QUEUE = "celery"
SIDES = ("durable", "plain")
# Plain Celery plus the layer's two bare round trips per attempt (bench/floor_jobs.py):
# the floor of scenarios 1 and 2, run beside the two sides.
FLOOR = "floor"
MODULES = {"durable": "bench.jobs", "plain": "bench.plain_jobs", FLOOR: "bench.floor_jobs"}

# Worker settings of the durable side unless a scenario says otherwise: the
# defaults of workers/settings.py except a lease short enough to watch recovery.
DURABLE_SETTINGS = {"DURABLE_LEASE_SECONDS": "5", "DURABLE_SWEEP_SECONDS": "1"}


def check_same_config() -> None:
    """Refuse to run if the plain app is not configured as the durable app is."""
    from workers.core.settings import Settings
    from workers.integration.extension import celery_config

    durable = celery_config(Settings())
    for key, value in durable.items():
        if key == "broker_url":
            continue
        if PLAIN_CONFIG.get(key) != value:
            raise RuntimeError(
                f"bench/plain_jobs.py: {key}={PLAIN_CONFIG.get(key)!r} but the durable app "
                f"uses {value!r}; the sides must be configured the same"
            )


def task_name(side: str, job: str) -> str:
    # The floor side runs plain Celery's own tasks, under their names.
    return f"{MODULES['plain' if side == FLOOR else side]}.{job}"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(p / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(len(ordered), rank) - 1]


@dataclass
class CommandStats:
    """``INFO commandstats`` and ``INFO cpu`` at one moment."""

    calls: dict[str, int] = field(default_factory=dict)
    usec: dict[str, int] = field(default_factory=dict)
    cpu: float = 0.0

    @classmethod
    def read(cls, client: redis.Redis) -> CommandStats:
        stats = cls()
        for name, row in client.info("commandstats").items():
            command = name.removeprefix("cmdstat_")
            stats.calls[command] = int(row["calls"])
            stats.usec[command] = int(row["usec"])
        cpu = client.info("cpu")
        stats.cpu = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
        return stats

    def minus(self, before: CommandStats) -> CommandStats:
        return CommandStats(
            calls={k: v - before.calls.get(k, 0) for k, v in self.calls.items()},
            usec={k: v - before.usec.get(k, 0) for k, v in self.usec.items()},
            cpu=self.cpu - before.cpu,
        )

    def scripts(self) -> tuple[int, int]:
        """(calls, µs) of Lua scripts: the durable layer's state transitions."""
        names = ("evalsha", "eval", "evalsha_ro", "eval_ro", "fcall")
        return (sum(self.calls.get(n, 0) for n in names), sum(self.usec.get(n, 0) for n in names))


@dataclass
class Drained:
    """One run: jobs published, then a worker started, timed until the queue drained."""

    jobs: int
    seconds: float
    stats: CommandStats
    # Messages the durable sweepers published (recoveries:due): re-publishes of
    # retries that were not claimed within the grace (0 on the plain side).
    swept: int = 0

    @property
    def per_second(self) -> float:
        return self.jobs / self.seconds


class Bench:
    """The bench's Redis server, its workers and its logs."""

    def __init__(self, base: Path | None = None) -> None:
        self._own_base = base is None
        self.base = base or Path(tempfile.mkdtemp(prefix="durable-bench-"))
        self.server = RedisServer(self.base / "redis", appendonly=False)
        self.client: redis.Redis = None  # type: ignore[assignment]
        self._workers: list[WorkerProcess] = []
        self._count = 0
        self._control: Celery | None = None

    def __enter__(self) -> Bench:
        self.server.start()
        self.client = self.server.client()
        return self

    def __exit__(self, error: type[BaseException] | None, *_: object) -> None:
        for worker in self._workers:
            worker.kill()
        self.server.kill()
        if self._own_base and error is None:
            shutil.rmtree(self.base, ignore_errors=True)  # kept after a failure: the logs

    @property
    def url(self) -> str:
        return self.server.url

    def flush(self) -> None:
        self.client.flushall()
        self.client.config_resetstat()

    # -- workers -------------------------------------------------------------------

    def env(self, side: str, settings: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DURABLE_", "BENCH_"))}
        # BENCH_PYTHONPATH: extra packages for the workers of both sides (what-if
        # runs, e.g. a directory holding hiredis), without touching the venv.
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("BENCH_PYTHONPATH")) if p)
        env.update(PYTHONPATH=path, PYTHONUNBUFFERED="1", BENCH_REDIS_URL=self.url)
        if side == "durable":
            env.update(DURABLE_SETTINGS)
            env["DURABLE_REDIS_URL"] = self.url
        env.update(settings or {})
        return env

    def worker(
        self, side: str, *, pool: str = "prefork", concurrency: int = 2, name: str = "w",
        settings: dict[str, str] | None = None, start: bool = True, queues: str | None = None,
    ) -> WorkerProcess:  # fmt: skip
        self._count += 1
        worker = WorkerProcess(
            self.env(side, settings), self.base / f"{side}-{name}-{self._count}.log",
            module=MODULES[side], name=f"{name}{self._count}", pool=pool,
            concurrency=concurrency if pool != "solo" else 1, queues=queues,
        )  # fmt: skip
        self._workers.append(worker)
        if start:
            worker.start(timeout=120)
        return worker

    @contextmanager
    def running(self, side: str, **options: Any) -> Iterator[WorkerProcess]:
        worker = self.worker(side, **options)
        try:
            yield worker
        finally:
            worker.kill()

    # -- publishing ----------------------------------------------------------------

    def publisher(self) -> Celery:
        """A client app configured as both sides are (JSON, task-sent events)."""
        client = Celery("bench_client", broker=self.url)
        client.conf.update(PLAIN_CONFIG)
        return client

    def control_app(self) -> Celery:
        if self._control is None:
            self._control = self.publisher()
        return self._control

    def publish(self, side: str, job: str, arglists: list[tuple[Any, ...]],
                pace: float | None = None) -> None:  # fmt: skip
        """Publish one message per argument tuple (``pace``: messages per second)."""
        self.publish_ids(side, job, arglists, pace)

    def publish_ids(self, side: str, job: str, arglists: list[tuple[Any, ...]],
                    pace: float | None = None) -> list[str]:  # fmt: skip
        client = self.publisher()
        name = task_name(side, job)
        started = time.monotonic()
        ids = []
        with client.producer_or_acquire() as producer:
            for i, args in enumerate(arglists):
                ids.append(client.send_task(name, args=args, producer=producer).id)
                if pace:
                    pause = started + (i + 1) / pace - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
        return ids

    def produce(
        self, side: str, job: str, n: int, *, mode: str = "delay", warmup: int = 0,
        queue: str | None = None, timeout: float = 1800.0, timers: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        """Enqueue ``n`` jobs from a producer process of ``side`` (:mod:`bench.producer`):
        ``job.delay`` in a loop or one ``group``, through the side's own app, so the
        durable side writes each record at enqueue. Returns what it measured."""
        command = [sys.executable, "-m", "bench.producer", side, job, str(n), "--mode", mode,
                   "--warmup", str(warmup)]  # fmt: skip
        if queue:
            command += ["--queue", queue]
        if timers:
            command.append("--timers")
        done = subprocess.run(command, env=self.env(side), cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"producer failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    def outstanding(self) -> int:
        """Messages not yet acked: waiting in the queue or held by a worker."""
        pipe = self.client.pipeline(transaction=False)
        pipe.llen(QUEUE)
        pipe.hlen("unacked")
        waiting, held = pipe.execute()
        return int(waiting) + int(held)

    def drain(
        self, side: str, job: str, n: int, *, pool: str = "prefork",
        settings: dict[str, str] | None = None, timeout: float = 900.0,
        profile: Callable[[WorkerProcess], Any] | None = None, enqueue: bool = False,
    ) -> Drained:  # fmt: skip
        """Publish ``n`` jobs, start a worker, time from its first fetch until all are acked.

        The same method on both sides; Redis' command counters are read after
        publishing and after the last ack, so they hold what the worker did.
        ``enqueue``: publish as an application does, ``job.delay`` from a producer
        process (:meth:`produce`; the durable side writes each record at enqueue),
        not ``send_task`` by name (the durable side's record is then made at claim).
        """
        self.flush()
        if enqueue:
            self.produce(side, job, n)
        else:
            self.publish(side, job, [(i,) for i in range(n)])
        if self.client.llen(QUEUE) != n:
            raise RuntimeError(f"expected {n} messages in the queue")
        before = CommandStats.read(self.client)
        with self.running(side, pool=pool, settings=settings, start=False) as worker:
            worker.start(wait=False)
            deadline = time.monotonic() + timeout
            while self.client.llen(QUEUE) >= n:
                self._check(worker, deadline)
                time.sleep(0.002)
            started = time.monotonic()
            if profile is not None:
                profile(worker)
            while self.outstanding():
                self._check(worker, deadline)
                time.sleep(0.01)
            seconds = time.monotonic() - started
            stats = CommandStats.read(self.client).minus(before)
        swept = Store(self.client).stats().get("recoveries:due", 0)
        return Drained(jobs=n, seconds=seconds, stats=stats, swept=swept)

    @staticmethod
    def _check(worker: WorkerProcess, deadline: float) -> None:
        if worker.process is not None and worker.process.poll() is not None:
            raise RuntimeError(f"worker exited:\n{worker.log_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench run did not finish:\n{worker.log_text()[-3000:]}")

    def now_ms(self) -> int:
        seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000


def load() -> str:
    """The machine's load averages, as ``uptime`` shows them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"
