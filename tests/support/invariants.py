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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

import redis

from policies import Event
from tests.jobs import body_runs
from tests.support.background import Background
from workers.core.keys import Layout
from workers.core.records import SHORT_FIELDS, JobRecord

TERMINAL = frozenset({"succeeded", "dead", "killed"})

# Jobs' state, attempt and whether any index holds them, read atomically.
# KEYS: due, leases, parked, unclaimed, then the jobs' hashes; ARGV: the jobs' ids.
READ_JOBS = """
local rows = {}
for n = 1, #ARGV do
  -- (a record holds long or short field names: DURABLE_RECORD_FIELDS)
  local job = redis.call('HMGET', KEYS[4 + n], 'state', 'attempt', 'SHORT_STATE', 'SHORT_ATTEMPT')
  job = {job[1] or job[3], job[2] or job[4]}
  local indexed = 0
  for i = 1, 4 do
    if redis.call('ZSCORE', KEYS[i], ARGV[n]) then indexed = 1 end
  end
  rows[#rows + 1] = {job[1] or '', job[2] or '0', indexed}
end
return rows
""".replace("SHORT_STATE", SHORT_FIELDS["state"]).replace("SHORT_ATTEMPT", SHORT_FIELDS["attempt"])


@dataclass
class Violations:
    """What broke, each as a readable line."""

    stranded: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    backwards: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return self.stranded + self.duplicates + self.backwards


def attempts_unaccounted(records: Mapping[str, JobRecord], runs: redis.Redis) -> list[str]:
    """Jobs with attempts that neither ran a body nor were judged an interruption.

    Through a failover an attempt can end without its body: its claim was applied
    but its WAIT kept failing, the worker never ran the body, and the lease ran
    out between two tries: an ``interruption``, as the policy counts it. (Since
    the pause between tries is capped at half the lease, less one WAIT, a
    refused claim keeps its lease: this allowance is for what is left, e.g. a
    claim handed back after DURABLE_REDIS_WAIT_SECONDS.) Every attempt up
    to the job's last must be one or the other; a body count alone would call
    such an attempt lost."""
    problems = []
    for job_id, record in records.items():
        ran = set(body_runs(runs, job_id))
        without = sorted(set(range(1, record.attempts + 1)) - ran)
        interrupted = record.failures.get(Event.INTERRUPTION, 0)
        if len(without) > interrupted:
            problems.append(f"{job_id}: attempts {without} ran no body; {interrupted} "
                            f"interruption(s) recorded")  # fmt: skip
    return problems


class NotReplicated(redis.RedisError):
    """A sample no replica confirmed: it may show a write a failover rolls back."""


class InvariantChecker:
    """Checks one test's jobs; keeps the highest attempt count seen per job."""

    def __init__(
        self, client: redis.Redis, job_ids: Iterable[str], prefix: str = "durable",
        shards: int = 1, runs: redis.Redis | None = None, replicas: int = 0,
    ) -> None:  # fmt: skip
        """``shards``: the store's layout (``DURABLE_REDIS_SHARDS``); with more than one
        each job is read atomically on its own (one script on its shard's slot).
        ``runs``: where the bodies count their runs, if not ``client``
        (``TEST_BODY_RUNS_REDIS_URL``).
        ``replicas``: count a sample only once that many replicas hold what it read
        (``DURABLE_REDIS_MIN_REPLICAS``'s promise). A primary shows a transition
        before it reaches a replica; if the primary dies then, the transition was
        never acknowledged (its WAIT failed, the worker ran no body and runs the
        transition again) and it rolls back with the failover. An unconfirmed
        sample would report that rollback as an attempt going backwards."""
        self.client = client
        self.replicas = replicas
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
        """(id, state, attempt, indexed) for every job: all in one script where the
        store has one shard, each job in its own (on its shard's slot) where it has more."""
        with self._lock:
            ids = list(self.job_ids)
        if not self.layout.sharded:
            rows = self._read_on(self.client, [ids], self.keys.base)
        elif not self.replicas:
            rows = self._read_on(self.client, [[job_id] for job_id in ids], None)
        else:  # WAIT has no key: each master's jobs on that master's own connection
            cluster = cast(redis.RedisCluster, self.client)
            by_node: dict[str, list[str]] = {}
            for job_id in ids:
                node = cluster.get_node_from_key(self.layout.of(job_id).due)
                by_node.setdefault(node.name, []).append(job_id)
            # A master that cannot confirm leaves its jobs out of this sample only.
            found: dict[str, tuple[str, str, int]] = {}
            failed: list[redis.RedisError] = []
            for name, group in by_node.items():
                client = cluster.get_redis_connection(cluster.get_node(node_name=name))
                probe = self.layout.of(group[0]).base
                try:
                    node_rows = self._read_on(client, [[i] for i in group], probe)
                except redis.RedisError as exc:
                    failed.append(exc)
                    continue
                found.update(zip(group, node_rows, strict=True))
            if failed:
                cluster.nodes_manager.initialize()  # a master died or moved: relearn the slots
                if not found:
                    raise failed[0]
            ids = [job_id for job_id in ids if job_id in found]
            rows = [found[job_id] for job_id in ids]
        return [(job_id, state or None, int(attempt or 0), bool(indexed))
                for job_id, (state, attempt, indexed) in zip(ids, rows, strict=True)]  # fmt: skip

    def _read_on(
        self, client: redis.Redis, groups: list[list[str]], probe: str | None
    ) -> list[tuple[str, str, int]]:
        """READ_JOBS once per group, in one pipeline; with ``replicas``, then a write
        on ``probe``'s slot and a WAIT on the same connection: a replica that has the
        write has everything the reads saw."""
        pipe = client.pipeline(transaction=False)
        for group in groups:
            k = self.layout.of(group[0]) if group else self.keys
            pipe.execute_command("EVAL", READ_JOBS, 4 + len(group), k.due, k.leases, k.parked,
                                 k.unclaimed, *(k.job(i) for i in group), *group)  # fmt: skip
        confirm = bool(self.replicas) and probe is not None
        if confirm:
            pipe.incr(f"{probe}:test:invariant-samples")
            pipe.wait(self.replicas, 1000)
        replies = pipe.execute()
        if confirm:
            reached = int(replies[-1])
            if reached < self.replicas:
                raise NotReplicated(f"{reached} of {self.replicas} replicas hold the sample")
            replies = replies[:-2]
        return [tuple(row) for group_rows in replies for row in group_rows]

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
