"""Operator actions on jobs: the API behind ``retryctl`` and the revoke hook.

A :class:`Control` acts on one store; it is given a Celery app only where it
broadcasts (a kill revokes the running attempt). Every action writes Redis
first (the source of truth), then tells the workers, so it holds across
worker restarts, which Celery's in-memory revoke list does not.

    control = Control(store, retention=settings.retention, app=app)
    control.kill(job_id, "partner asked us to stop")
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from workers.core.records import JobRecord, JobState
from workers.core.runtime import Runtime
from workers.core.settings import Settings
from workers.core.store import Store

# Celery ids are UUIDs by default, but apply_async(task_id=...) takes any
# string; accept the characters ids are made of in practice, refuse the rest
# (spaces, quotes, globs, control bytes) before anything touches Redis.
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,199}$")


# What ``list_jobs`` shows without a state filter: jobs that are not finished.
LIVE_STATES = (JobState.RUNNING, JobState.RETRYING, JobState.PARKED, JobState.QUEUED)


MIN_PREFIX = 4
"""The shortest id prefix that names a job (``retryctl show 7997``)."""

AMBIGUOUS_SHOWN = 10


class InvalidJobId(ValueError):
    """A string that cannot be a job id."""


class AmbiguousJobId(ValueError):
    """An id prefix that more than one job's id starts with."""

    def __init__(self, prefix: str, candidates: list[str]) -> None:
        self.prefix = prefix
        self.candidates = candidates
        shown = ", ".join(candidates[:AMBIGUOUS_SHOWN])
        more = " and more" if len(candidates) > AMBIGUOUS_SHOWN else ""
        super().__init__(
            f"{prefix} is the start of the ids of several jobs: {shown}{more}; give more of the id"
        )


def validate_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.match(job_id):
        shown = repr(job_id)[:60]
        raise InvalidJobId(
            f"{shown} is not a job id: expected a Celery task id such as "
            "'3f1c2a9e-6b1d-4c55-9e7e-2b8d0e4f1a7c' (letters, digits and . _ : @ + = -, "
            "at most 200 characters)"
        )
    return job_id


@dataclass(frozen=True)
class ActionResult:
    """What an action did to one job: ``done`` or why not (``unknown``, ``refused``...)."""

    job_id: str
    outcome: str
    previous_state: str | None = None

    @property
    def done(self) -> bool:
        return self.outcome in ("killed", "resumed", "ok")


class Control:
    """Operator actions on the jobs of one store."""

    def __init__(self, store: Store, *, retention: float, app: Any = None) -> None:
        """``retention``: seconds a killed record is kept; ``app``: the Celery app that
        broadcasts revokes (None: the kill is only written to Redis)."""
        self.store = store
        self.retention = retention
        self.app = app

    @classmethod
    def of_runtime(cls, rt: Runtime, app: Any = None) -> Control:
        return cls(rt.store, retention=rt.settings.retention, app=app)

    @classmethod
    def from_settings(cls, settings: Settings, app: Any = None) -> Control:
        return cls.of_runtime(Runtime(settings), app)

    def resolve(self, job_id: str) -> str:
        """The job that ``job_id`` names: that id if the store has it, else the one
        job whose id starts with it (at least :data:`MIN_PREFIX` characters), as git
        and docker take ids.

        Checked with ``validate_job_id`` before Redis is touched. A prefix of no
        job comes back as it is (the caller reports it not found); a prefix of
        several raises :class:`AmbiguousJobId` naming them. Reads the indexes,
        never a scan of keys.
        """
        validate_job_id(job_id)
        if self.store.exists(job_id) or len(job_id) < MIN_PREFIX:
            return job_id
        found = self.store.ids_with_prefix(job_id, limit=AMBIGUOUS_SHOWN + 1)
        if len(found) > 1:
            raise AmbiguousJobId(job_id, sorted(found))
        return found[0] if found else job_id

    def status(self, job_id: str) -> JobRecord | None:
        """What the store knows about a job, or None."""
        fields = self.store.get(validate_job_id(job_id))
        return JobRecord.from_fields(job_id, fields) if fields else None

    def kill(
        self,
        job_id: str,
        reason: str = "killed by an operator",
        *,
        record_unknown: bool = False,
        revoke: bool = True,
    ) -> ActionResult:
        """Stop a job for good: no delivery will run it again.

        The kill is written to Redis first, then revoked with terminate (when
        this Control has an app) so a running attempt stops now.
        ``record_unknown`` records the kill of a job the store has not seen
        (enqueued, never started), so its message is dropped when it comes.
        """
        validate_job_id(job_id)
        retention_ms = int(self.retention * 1000)
        reply = self.store.kill(job_id, reason, retention_ms, record_unknown)
        result = ActionResult(job_id, reply[0], reply[1] if len(reply) > 1 else None)
        if result.done and revoke and self.app is not None:
            self.app.control.revoke(job_id, terminate=True)
        return result

    def resume(self, job_id: str) -> ActionResult:
        """Bring a dead or parked job back: it is published at once, with a new window."""
        reply = self.store.resume(validate_job_id(job_id), max_retrying=None, new_streak=True)
        return ActionResult(job_id, reply[0], reply[1] if len(reply) > 1 else None)

    def retry_now(self, job_id: str) -> ActionResult:
        """Skip the rest of a waiting job's delay: the next sweep publishes it."""
        reply = self.store.retry_now(validate_job_id(job_id))
        return ActionResult(job_id, reply[0], reply[1] if len(reply) > 1 else None)

    def purge(
        self,
        state: JobState,
        older_than: float,
        *,
        policy: str | None = None,
        task: str | None = None,
        batch: int = 1000,
    ) -> int:
        """Delete ended records of ``state`` that ended more than ``older_than`` seconds ago.

        Only ended states (succeeded, dead, killed) may be purged; the record and
        its index entries go. Returns how many records were deleted.
        """
        if not state.is_terminal:
            raise ValueError(
                f"only ended jobs can be purged (succeeded, dead, killed), not {state}"
            )
        st = self.store
        cutoff_ms = st.now_ms() - int(older_than * 1000)
        deleted = 0
        for key in st.layout.across(st.index_key(state)):  # shard by shard
            offset = 0
            while ids := st.index_page(key, offset, batch):
                rows = st.fields_of(ids, ("updated_at", "policy", "task"))
                chosen = [
                    job_id
                    for job_id, (updated, job_policy, job_task) in zip(ids, rows, strict=True)
                    if int(updated or 0) <= cutoff_ms
                    and (policy is None or job_policy == policy)
                    and (task is None or job_task == task)
                ]
                purged, removed = st.purge(chosen, state, cutoff_ms) if chosen else (0, 0)
                deleted += purged
                offset += len(ids) - removed
        return deleted

    def list_jobs(
        self,
        *,
        state: JobState | None = None,
        policy: str | None = None,
        task: str | None = None,
        limit: int = 50,
        stuck: bool = False,
        unread: set[int] | None = None,
    ) -> list[JobRecord]:
        """Jobs from the indexes (never a key scan), newest index entries last.

        Without ``state``: running, waiting (retrying and queued) and parked jobs, and
        first attempts not started yet.
        ``stuck``: only jobs reported stuck in their current failure streak.
        ``unread``: on a sharded layout, list the jobs of the shards that answer and
        add the numbers of those that do not (a Cluster master down) to this set;
        without it, a node that does not answer raises.
        """
        st = self.store
        states = [state] if state is not None else list(LIVE_STATES)
        keys = list(dict.fromkeys(key for s in states for key in st.index_keys(s)))
        if stuck:
            keys = [st.keys.stuck]
        found: list[JobRecord] = []
        chunk = min(max(limit, 200), 5000)
        for key in keys:
            if len(found) >= limit:
                break
            for ids in st.iter_index(key, chunk, unread):
                if policy is not None or task is not None:
                    # Read the fields the filters need first: whole records only for matches.
                    rows = st.fields_of(ids, ("policy", "task"))
                    ids = [
                        job_id
                        for job_id, (job_policy, job_task) in zip(ids, rows, strict=True)
                        if (policy is None or job_policy == policy)
                        and (task is None or job_task == task)
                    ]
                for job_id, fields in zip(ids, st.get_many(ids), strict=True):
                    if not fields:
                        continue
                    record = JobRecord.from_fields(job_id, fields)
                    if state is not None and record.state is not state:
                        continue
                    if policy is not None and record.policy != policy:
                        continue
                    if task is not None and record.task != task:
                        continue
                    found.append(record)
                    if len(found) >= limit:
                        break
                if len(found) >= limit:
                    break
        return found
