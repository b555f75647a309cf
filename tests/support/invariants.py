"""The design's invariants, checked against the live store while faults hit it.

Given the store (key names come from :class:`workers.core.keys.Keys`, never spelt
here) and the jobs of a test, an :class:`InvariantChecker` answers:

- stranded: a non-terminal job with no due entry, no lease, not parked and not
  an unclaimed first attempt
  (invariant 2; a broker message cannot be inspected cheaply, but every retry,
  countdown ones included, is also in the due set);
- duplicate bodies: an attempt whose body ran more than once (invariant 1),
  from the ``bodyruns:<id>`` counts the test jobs keep;
- attempts going backwards: :meth:`sample` reads every job's attempt count in
  one transaction; a count lower than an earlier sample is a violation
  (invariant 3). Call it from a thread while the faults run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis

from tests.jobs import body_runs
from tests.support.background import Background
from workers.core.keys import Layout

TERMINAL = frozenset({"succeeded", "dead", "killed"})

# One job's state, attempt and whether any index holds it, read atomically.
READ_JOB = """
local job = redis.call('HMGET', KEYS[1], 'state', 'attempt')
local indexed = 0
for i = 2, 5 do
  if redis.call('ZSCORE', KEYS[i], ARGV[1]) then indexed = 1 end
end
return {job[1] or '', job[2] or '0', indexed}
"""


@dataclass
class Violations:
    """What broke, each as a readable line."""

    stranded: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    backwards: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return self.stranded + self.duplicates + self.backwards


class InvariantChecker:
    """Checks one test's jobs; keeps the highest attempt count seen per job."""

    def __init__(
        self, client: redis.Redis, job_ids: Iterable[str], prefix: str = "durable",
        shards: int = 1, runs: redis.Redis | None = None,
    ) -> None:  # fmt: skip
        """``shards``: the store's layout (``DURABLE_REDIS_SHARDS``); with more than one
        each job is read atomically on its own (one script on its shard's slot).
        ``runs``: where the bodies count their runs, if not ``client``
        (``TEST_BODY_RUNS_REDIS_URL``)."""
        self.client = client
        self.runs = runs or client
        self.layout = Layout(prefix, shards)
        self.keys = self.layout.shard(0)
        self.job_ids = list(job_ids)
        self.highest: dict[str, int] = {}
        self.samples = 0
        self.violations = Violations()
        self._lock = threading.Lock()

    def add(self, job_ids: Iterable[str]) -> None:
        with self._lock:
            self.job_ids.extend(job_ids)

    def _read(self) -> list[tuple[str, str | None, int, bool]]:
        """(id, state, attempt, indexed) for every job, read atomically (MULTI/EXEC)."""
        with self._lock:
            ids = list(self.job_ids)
        if self.layout.sharded:
            return self._read_each(ids)
        pipe = self.client.pipeline(transaction=True)
        for job_id in ids:
            pipe.hmget(self.keys.job(job_id), "state", "attempt")
            pipe.zscore(self.keys.due, job_id)
            pipe.zscore(self.keys.leases, job_id)
            pipe.zscore(self.keys.parked, job_id)
            pipe.zscore(self.keys.unclaimed, job_id)
        replies = pipe.execute()
        rows = []
        for i, job_id in enumerate(ids):
            (state, attempt), *entries = replies[5 * i : 5 * i + 5]
            indexed = any(entry is not None for entry in entries)
            rows.append((job_id, state, int(attempt or 0), indexed))
        return rows

    def _read_each(self, ids: list[str]) -> list[tuple[str, str | None, int, bool]]:
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            k = self.layout.of(job_id)
            pipe.execute_command("EVAL", READ_JOB, 5, k.job(job_id), k.due, k.leases, k.parked,
                                 k.unclaimed, job_id)  # fmt: skip
        rows = []
        for job_id, (state, attempt, indexed) in zip(ids, pipe.execute(), strict=True):
            rows.append((job_id, state or None, int(attempt or 0), bool(indexed)))
        return rows

    def sample(self) -> int:
        """Read every job once; record attempts that went backwards and stranded jobs."""
        rows = self._read()
        self.samples += 1
        for job_id, state, attempt, indexed in rows:
            before = self.highest.get(job_id, 0)
            if attempt < before:
                self.violations.backwards.append(
                    f"{job_id}: attempt {attempt} after {before} was seen (sample {self.samples})"
                )
            self.highest[job_id] = max(before, attempt)
            if state is not None and state not in TERMINAL and not indexed:
                self.violations.stranded.append(
                    f"{job_id}: state {state} at attempt {attempt} with no due, lease, "
                    f"parked or unclaimed entry (sample {self.samples})"
                )
        return len(rows)

    def check_bodies(self) -> int:
        """Record every (job, attempt) whose body ran more than once; return attempts seen."""
        checked = 0
        for job_id in list(self.job_ids):
            runs = body_runs(self.runs, job_id)
            checked += len(runs)
            for attempt, times in sorted(runs.items()):
                if times > 1:
                    self.violations.duplicates.append(
                        f"{job_id}: attempt {attempt} body ran {times} times"
                    )
        return checked

    def states(self) -> dict[str, str | None]:
        return {job_id: state for job_id, state, _, _ in self._read()}

    def assert_held(self) -> None:
        problems = self.violations.all()
        assert not problems, f"{len(problems)} invariant violations:\n" + "\n".join(problems[:30])


class Sampler(Background):
    """Calls :meth:`InvariantChecker.sample` every ``interval`` seconds on a thread.

    Redis may be down for part of a test: a failed sample is counted, not fatal.
    """

    def __init__(self, checker: InvariantChecker, interval: float = 0.25) -> None:
        super().__init__("invariant-sampler", interval)
        self.checker = checker
        self.failed_samples = 0

    def step(self) -> None:
        try:
            self.checker.sample()
        except redis.RedisError:
            self.failed_samples += 1
