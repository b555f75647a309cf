"""Recovery, run by a timer in every worker: nothing waits on a worker that died.

Each pass (every ``DURABLE_SWEEP_SECONDS``):

1. judges attempts whose lease expired (their worker died) as ``interruption``
   (or ``timeout`` after a hard time limit), by the job's policy;
2. publishes retries whose time has come (an interruption judged just now
   with no backoff among them): long delays held only in Redis, and
   countdown retries a worker may have lost: once a death (or a worker's lost
   broker connection) is noticed, the held retries are pulled forward to their
   due time and published then; with no death, a held retry's entry waits at
   its safety time (where it was scored) and is published only then (a
   message lost without a death);
3. unparks jobs, oldest first, when their policy's ``max_retrying`` has room;
4. now and then, trims index entries of expired records.

Every step claims its work atomically in Redis, so any number of sweepers
(one per worker) may run at once without publishing or judging anything twice.
With several shards (``DURABLE_REDIS_SHARDS``) each step visits every shard in
one pipeline (a round trip per Redis node), taking at most its share of the
batch from each, so a pass does about the same work whatever the shard count;
each sweeper starts its passes at another shard (random, then moving round),
so sweepers that run at once begin on different shards. On a Redis Cluster the
steps run master by master, so a master that is down (until its replica is
promoted) holds up only its own shards.

While Redis refuses writes or cannot be reached, passes fail: that is told
once per streak (a refusal through ``Runtime.refusals``), and for one lease
length after the last failed pass the sweeper judges no worker dead and takes
no expired lease: live workers could not renew their leases or heartbeats
meanwhile, and get that long to do it before anything is taken for a death.

The sweeper publishes through the :class:`~workers.core.publisher.Publisher`
and learns a job's policy from the :data:`PolicyLookup` it is given: the
integration layer passes its app's (``install(app)``), so a retry goes out on
the broker of the app its job belongs to.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from policies import Event, RetryPolicy, decide
from workers.core.attempt import Attempt
from workers.core.clock import RedisClock
from workers.core.errors import StateUnavailable
from workers.core.failures import interruption_failure
from workers.core.outcomes import FailKind, Payload
from workers.core.publisher import EndedJob, NextAttempt, Publisher, retry_queue
from workers.core.recorder import record_failure
from workers.core.refusals import refusal_reason
from workers.core.runtime import Runtime
from workers.core.store import NODE_UNREACHABLE

log = logging.getLogger(__name__)

BATCH = 500
# Trimming is cheap (one ZREMRANGEBYSCORE per ended state), but there is no
# hurry either: a stale index entry only points at an expired record.
TRIM_EVERY_SECONDS = 10.0
# A node that never said how many messages it may hold unstarted (a worker of
# an older release) counts as Celery's default prefetch (4) on a few processes.
UNKNOWN_NODE_CAPACITY = 16
# A silence no worker reaches: heartbeats that judge nobody dead.
NEVER_MS = 2**50
_rng = random.Random()

PolicyLookup = Callable[[str, str], RetryPolicy | None]
"""(task name, policy name) -> the policy a job runs under, or None if unknown here."""


@dataclass
class SweepReport:
    """What one pass did, for logs, metrics and tests."""

    dispatched: int = 0
    republished: int = 0
    recovered: int = 0
    unparked: int = 0
    pulled: int = 0  # held retries brought forward after a death
    trimmed: int = 0
    skipped: list[str] = field(default_factory=list)
    dead_workers: list[str] = field(default_factory=list)


class Sweeper:
    """One worker's sweeper. ``run_once`` is one pass; ``start`` runs passes on a thread."""

    def __init__(
        self,
        rt: Runtime,
        publisher: Publisher,
        policy_for: PolicyLookup,
        owner: str,
        capacity: int = 0,
    ) -> None:
        """``capacity``: how many messages this worker may hold unstarted (its prefetch)."""
        self.rt = rt
        self.publisher = publisher
        self.policy_for = policy_for
        self.capacity = capacity
        self.owner = f"sweeper:{owner}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_trim = 0.0
        # Until then (monotonic) leases and heartbeats are not trusted: see the module doc.
        self._distrust_until = 0.0
        self._trouble: str | None = None  # "refused" or "unreachable" while it lasts
        # Set (from the consumer's thread) when this worker's broker connection was
        # re-made: Celery dropped the countdown messages it held.
        self._messages_lost = threading.Event()
        self._next_shard = _rng.randrange(rt.store.layout.shards)
        self._pass_shards: list[int] = []

    def _shards(self) -> list[int]:
        """This pass's shards, in the order visited; the next pass starts one further."""
        shards = self.rt.store.shard_numbers(self._next_shard)
        self._next_shard = (self._next_shard + 1) % len(shards)
        return shards

    # -- one pass -----------------------------------------------------------------

    def run_once(self) -> SweepReport:
        """One pass. On a Redis Cluster the shard steps run master by master: a master
        that cannot be reached fails its own shards' part (raised at the end, so the
        pass still counts as failed), and the other masters' shards are swept. With the
        ``{fleet}`` keys' master down, they are swept for due retries and parked jobs."""
        report = SweepReport()
        store = self.rt.store
        trusted = time.monotonic() >= self._distrust_until
        unreachable: list[redis.RedisError] = []
        try:
            now_ms: int | None
            now_ms, report.dead_workers = store.heartbeat(
                self.owner, self.rt.lease_ms if trusted else NEVER_MS, self.capacity
            )
        except NODE_UNREACHABLE as exc:
            if not store.layout.sharded:
                raise
            # The master of the {fleet} keys is down: no heartbeat, so no death is
            # judged and no lease taken (who is alive is unknown). The due retries and
            # parked jobs of the shards that answer need neither: they go on.
            unreachable.append(exc)
            now_ms, trusted = None, False
        for node in report.dead_workers:
            log.warning("durable-retry: worker %s stopped answering; its countdown retries "
                        "and unstarted first attempts will be published by the sweepers",
                        node)  # fmt: skip
        died_ms = None if now_ms is None else self._death_noticed(now_ms, report.dead_workers)
        dead_capacity = (
            store.fleet_capacity(report.dead_workers, unknown=UNKNOWN_NODE_CAPACITY)
            if report.dead_workers else 0
        )  # fmt: skip
        for group in store.shard_groups(self._shards()):
            self._pass_shards = group
            try:
                if now_ms is not None:
                    report.republished += self.republish_unclaimed(now_ms, dead_capacity)
                report.pulled += self.pull_held(died_ms)
                # Expired leases first: an interruption recorded now with no backoff is
                # due now, and this pass publishes it (the other order waited a pass).
                report.recovered += self.recover_expired_leases(report) if trusted else 0
                report.dispatched += self.dispatch_due()
                report.unparked += self.unpark()
            except NODE_UNREACHABLE as exc:
                unreachable.append(exc)  # its shards wait for a pass that reaches them
        self._pass_shards = []
        # Counted for metrics; no round trip when the pass recovered nothing.
        store.add_stats(
            {
                "recoveries:due": report.dispatched,
                "recoveries:lease": report.recovered,
                "recoveries:unclaimed": report.republished,
            }
        )
        if unreachable:
            raise unreachable[0]
        settings = self.rt.settings
        trim_every = min(TRIM_EVERY_SECONDS, settings.retention / 2,
                         settings.succeeded_retention / 2)  # fmt: skip
        if time.monotonic() - self._last_trim >= trim_every:
            self._last_trim = time.monotonic()
            report.trimmed = store.trim_ended()
        return report

    def _visit(self) -> list[int]:
        """The shards this step visits: the pass's group (every shard off a pass)."""
        return self._pass_shards or self.rt.store.shard_numbers()

    def republish_unclaimed(self, now_ms: int, dead_capacity: int) -> int:
        """Publish again first attempts that may have been lost; returns how many.

        A worker pops messages from the head of its queue, so what a dead
        worker held (popped, prefetched, or lost by kombu between its pop and
        its unacked record) is among the oldest unclaimed first attempts: at
        most the fleet's prefetch capacity of them (``dead_capacity``, 0 when
        no worker died). Those are copied once per death, whatever the backlog
        behind them; claim drops every extra copy (on a Cluster each master's
        shards give up to that many). Any first attempt unclaimed for the safety
        time (the broker's visibility timeout) is copied too: a message lost
        without a death.
        """
        store = self.rt.store
        jobs = []
        if dead_capacity:
            jobs += store.take_unclaimed(now_ms, dead_capacity, shards=self._visit())
        safety_ms = int(self.rt.settings.effective_visibility_timeout * 1000)
        jobs += store.take_unclaimed(now_ms - safety_ms, BATCH, shards=self._visit())
        for job in jobs:
            self.publisher.publish(
                NextAttempt(
                    job_id=job.id, task=job.task, payload=job.payload, attempt=1, queue=None,
                    eta=None, policy=job.policy, first_failure_at=None,
                )
            )  # fmt: skip
            log.info("job %s task=%s attempt=1 published again by the sweeper (not claimed; "
                     "a worker died or the safety time passed)", job.id, job.task)  # fmt: skip
        return len(jobs)

    def messages_lost(self) -> None:
        """This worker's broker connection was lost and made again (Celery's
        consumer restarted): the countdown messages it held are gone until the
        broker's visibility timeout. The next pass counts it as a death."""
        self._messages_lost.set()

    def _death_noticed(self, now_ms: int, dead_workers: list[str]) -> int | None:
        """When this pass counts a death from (Redis ms), or None: a worker judged
        dead now, or this worker's own broker connection re-made (recorded as the
        fleet's last death, cleared only once recorded: a failed pass retries)."""
        if self._messages_lost.is_set():
            now_ms = self.rt.store.lost_messages()
            self._messages_lost.clear()
            log.warning("durable-retry: this worker's broker connection was re-made; the "
                        "countdown retries it held will be published by the sweepers")  # fmt: skip
            return now_ms
        return now_ms if dead_workers else None

    def pull_held(self, died_ms: int | None) -> int:
        """After a death or a lost connection, pull held retries forward to their
        due time (they waited for the safety time); returns how many moved."""
        if died_ms is None:
            return 0
        lease = self.rt.lease_ms
        window = int(self.rt.settings.max_countdown * 1000) + lease + self.rt.held_safety_ms
        return self.rt.store.pull_held(died_ms, within_ms=window, shards=self._visit())

    def dispatch_due(self) -> int:
        store = self.rt.store
        _, ids = store.take_due(store.per_shard_limit(BATCH), redispatch_ms=self.rt.lease_ms,
                                shards=self._visit())  # fmt: skip
        if not ids:
            return 0
        published = 0
        for job in store.dispatched(ids, safety_ms=self.rt.held_safety_ms):
            if job.state != "queued":
                continue
            policy = self.policy_for(job.task, job.policy)
            self.publisher.publish(
                NextAttempt(
                    job_id=job.id, task=job.task, payload=job.payload, attempt=job.attempt + 1,
                    queue=retry_queue(policy, job.payload.queue) if job.attempt else None,
                    eta=None, policy=job.policy, first_failure_at=job.first_failure_at,
                    event=job.last_event, budget_slot_taken=job.budget_slot_taken,
                )
            )  # fmt: skip
            published += 1
            log.info(
                "job %s task=%s attempt=%d published by the sweeper",
                job.id, job.task, job.attempt + 1,
            )  # fmt: skip
        return published

    def recover_expired_leases(self, report: SweepReport) -> int:
        store = self.rt.store
        _, ids = store.expired_leases(store.per_shard_limit(BATCH), shards=self._visit())
        recovered = 0
        for job_id in ids:
            taken = store.take_lease(job_id, self.owner, self.rt.lease_ms)
            if taken is None:
                continue
            fields = taken.fields
            task = fields.get("task", "")
            policy = self.policy_for(task, fields["policy"])
            if policy is None:
                # Another worker may know this task; our lease on it expires soon.
                report.skipped.append(job_id)
                log.warning(
                    "job %s: lease expired but task %s and policy %s are unknown here",
                    job_id, fields.get("task"), fields.get("policy"),
                )  # fmt: skip
                continue
            attempt = Attempt(
                job_id=job_id, number=int(fields["attempt"]), owner=self.owner, task=task,
                policy=policy, fields=fields, clock=RedisClock(taken.now_ms),
            )  # fmt: skip
            event = Event(fields.get("interrupt") or Event.INTERRUPTION.value)
            failure = interruption_failure(event, attempt.number)
            decision = decide(policy, attempt.history(), failure, attempt.clock.now(), _rng)
            recorded = record_failure(
                self.rt, self.publisher, attempt, failure, decision, countdown_allowed=False
            )
            if recorded is not None and recorded.kind is FailKind.DEAD:
                self._gave_up(attempt, decision.reason)
            if recorded is not None:
                recovered += 1
        return recovered

    def _gave_up(self, attempt: Attempt, reason: str) -> None:
        fields = attempt.fields
        payload = Payload(
            fields.get("args") or "[]", fields.get("kwargs") or "{}", fields.get("queue") or "",
            fields.get("opts") or "",
        )  # fmt: skip
        try:
            self.publisher.gave_up(EndedJob(attempt.job_id, attempt.task, payload, reason))
        except Exception:
            # The job is dead in Redis either way; only its result and errbacks are missing.
            log.exception("job %s: its failure was recorded but not reported to Celery's "
                          "result backend and link_error", attempt.job_id)  # fmt: skip

    def unpark(self) -> int:
        store = self.rt.store
        ids = store.parked_ids(store.per_shard_limit(BATCH), shards=self._visit())
        if not ids:
            return 0
        full: set[str] = set()
        unparked = 0
        for job_id, fields in zip(ids, store.get_many(ids), strict=True):
            if not fields or fields.get("policy") in full:
                continue
            policy = self.policy_for(fields.get("task", ""), fields["policy"])
            cap = policy.max_retrying if policy else None
            outcome = store.resume(job_id, cap, new_streak=False, policy=fields["policy"])
            if outcome[0] == "full":
                full.add(fields["policy"])
            elif outcome[0] == "resumed":
                unparked += 1
                log.info("job %s task=%s unparked: its policy has room", job_id, fields.get("task"))
        return unparked

    # -- the timer ----------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="durable-sweeper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.rt.store.leave(self.owner)
        except redis.RedisError as exc:
            log.warning("durable-retry: could not sign the sweeper off: %s", exc)

    def _loop(self) -> None:
        interval = self.rt.settings.sweep_seconds
        next_pass = time.monotonic()
        while not self._stop.is_set():
            # Passes start at a fixed rate: a slow pass does not push the next one back.
            next_pass += interval
            self.sweep()
            self._stop.wait(max(0.0, next_pass - time.monotonic()))
            next_pass = max(next_pass, time.monotonic() - interval)

    def sweep(self) -> SweepReport | None:
        """One pass that never raises: Redis trouble is told once per streak."""
        try:
            report = self.run_once()
        except (redis.RedisError, StateUnavailable) as exc:
            self._failed(exc)
            return None
        except Exception:
            log.exception("durable-retry: sweep failed")
            return None
        if self._trouble is not None:
            if self._trouble == "unreachable":
                log.info("durable-retry: Redis answers again; sweeps resume (expired leases "
                         "are left to their workers for %gs)", self.rt.settings.lease_seconds)
            self._trouble = None
            self.rt.refusals.accepted()
        return report

    def _failed(self, exc: BaseException) -> None:
        self._distrust_until = time.monotonic() + self.rt.settings.lease_seconds
        cause = exc.__cause__ if isinstance(exc, StateUnavailable) else exc
        reason = refusal_reason(cause) if cause is not None else None
        if reason is not None or isinstance(exc, StateUnavailable):
            if reason is not None and not isinstance(exc, StateUnavailable):
                self.rt.refusals.note(exc, reason)  # call_redis counted the others
            self._trouble = "refused" if reason is not None else (self._trouble or "unreachable")
            return
        if self._trouble != "unreachable":
            log.warning("durable-retry: sweeps fail, Redis unreachable: %s; trying again "
                        "every %gs", exc, self.rt.settings.sweep_seconds)  # fmt: skip
        self._trouble = "unreachable"
