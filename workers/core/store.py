"""The Redis state of every job: the only module that knows key names.

Each state transition is one Lua script in ``workers/lua/`` (its header names
every key and argument); this module passes every key in KEYS, so a Redis
Cluster deployment only needs hash tags added in :class:`Keys`, and maps each
script's answer to a small typed value. Times are Redis' own clock, in
milliseconds, read inside the scripts (``TIME``): workers whose clocks drift
still agree on what is due and whose lease has ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any, cast

import redis

from workers.core.failures import truncated
from workers.core.keys import Keys
from workers.core.outcomes import (
    Claimed,
    Dropped,
    DueJob,
    Enqueued,
    FailKind,
    FailOutcome,
    Payload,
)
from workers.core.records import (
    DEFAULT_HISTORY_ATTEMPTS,
    ENDED_STATES,
    HISTORY_TEXT_CHARS,
    JobState,
)
from workers.core.settings import Settings, is_sentinel_url, parse_sentinel_url

LUA_SCRIPTS = (
    "enqueue", "forget", "claim", "succeed", "fail", "checkpoint", "renew", "interrupt",
    "take_lease", "take_due", "dispatched", "take_unclaimed", "expired", "kill", "resume",
    "retry_now", "nodes", "stuck", "purge", "release", "pull_held", "lost_messages",
    "budget", "budget_wait",
)  # fmt: skip


def _lua_text(*parts: str) -> str:
    return resources.files("workers.core").joinpath("lua", *parts).read_text()


def load_script(name: str) -> str:
    """The text of ``lua/<name>.lua``, with each ``-- include: <lib>`` line replaced
    by ``lua/lib/<lib>.lua`` (Redis scripts cannot import; shared steps live once)."""
    lines = []
    for line in _lua_text(f"{name}.lua").splitlines():
        if line.startswith("-- include: "):
            line = _lua_text("lib", line.removeprefix("-- include: ").strip() + ".lua")
        lines.append(line)
    return "\n".join(lines) + "\n"


# The attempt's own path: what a worker acks a message after. With
# ``min_replicas`` each of these waits (WAIT) for that many replicas.
REPLICATED = frozenset({"enqueue", "claim", "succeed", "fail", "checkpoint"})


class ReplicasBehind(redis.ResponseError):
    """Fewer replicas than ``DURABLE_REDIS_MIN_REPLICAS`` acknowledged a transition.

    The message starts with NOREPLICAS, so it is a refusal
    (``workers.core.refusals``): the caller waits and runs the transition again,
    as for a Redis that refuses writes; the scripts are safe to run again.
    """


def connect(
    url: str,
    *,
    sentinel_master: str | None = None,
    sentinel_password: str | None = None,
    **options: Any,
) -> redis.Redis:
    """A client of the Redis at ``url``; for ``sentinel://`` URLs, a client of the
    master that the sentinels name now, which follows it through a failover."""
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, decode_responses=True, **options)
    from redis.sentinel import Sentinel

    parsed = parse_sentinel_url(url)
    if not sentinel_master:
        raise ValueError(
            "a sentinel:// URL needs DURABLE_REDIS_SENTINEL_MASTER, the master group's name"
        )
    sentinel_kwargs: dict[str, Any] = {
        name: options[name] for name in ("socket_timeout", "socket_connect_timeout")
        if name in options
    }  # fmt: skip
    if sentinel_password:
        sentinel_kwargs["password"] = sentinel_password
    sentinel = Sentinel(
        list(parsed.hosts), sentinel_kwargs=sentinel_kwargs, db=parsed.db,
        username=parsed.username, password=parsed.password, decode_responses=True, **options,
    )  # fmt: skip
    return cast(redis.Redis, sentinel.master_for(sentinel_master, redis_class=redis.Redis))


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}


class Store:
    """Typed access to the job state in one Redis database."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "durable",
        *,
        min_replicas: int = 0,
        min_replicas_timeout_ms: int = 1000,
    ) -> None:
        self.redis = client
        self.keys = Keys(prefix)
        self.min_replicas = min_replicas
        self.min_replicas_timeout_ms = min_replicas_timeout_ms
        self._scripts = {
            name: client.register_script(load_script(name)) for name in LUA_SCRIPTS
        }

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = "durable",
        *,
        sentinel_master: str | None = None,
        sentinel_password: str | None = None,
        min_replicas: int = 0,
        min_replicas_timeout_ms: int = 1000,
        **options: Any,
    ) -> Store:
        options.setdefault("socket_timeout", 10)
        options.setdefault("socket_connect_timeout", 5)
        options.setdefault("health_check_interval", 30)
        client = connect(
            url, sentinel_master=sentinel_master, sentinel_password=sentinel_password, **options
        )
        return cls(client, prefix, min_replicas=min_replicas,
                   min_replicas_timeout_ms=min_replicas_timeout_ms)  # fmt: skip

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> Store:
        """The store of a deployment: its URL (plain or Sentinel), prefix and WAIT."""
        password = settings.redis_sentinel_password
        return cls.from_url(
            settings.redis_url, prefix=settings.key_prefix,
            sentinel_master=settings.redis_sentinel_master,
            sentinel_password=password.get_secret_value() if password else None,
            min_replicas=settings.redis_min_replicas,
            min_replicas_timeout_ms=int(settings.redis_min_replicas_timeout * 1000),
            **options,
        )  # fmt: skip

    def _run(self, name: str, keys: list[str], args: list[Any], client: Any = None) -> Any:
        if client is None and self.min_replicas > 0 and name in REPLICATED:
            return self._run_replicated(name, keys, args)
        return self._scripts[name](keys=keys, args=args, client=client)

    def _run_replicated(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """The script, then WAIT on the same connection (WAIT counts the replicas that
        have this connection's writes); fewer than ``min_replicas`` is a failed write."""
        script = self._scripts[name]
        # EVALSHA itself, not the Script in the pipeline: that costs a SCRIPT EXISTS
        # round trip per call. NOSCRIPT (a promoted replica's empty cache) ran nothing.
        for loaded in (False, True):
            pipe = self.redis.pipeline(transaction=False)
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            pipe.wait(self.min_replicas, self.min_replicas_timeout_ms)
            try:
                reply, reached = pipe.execute()
                break
            except redis.exceptions.NoScriptError:
                if loaded:
                    raise
                self.redis.script_load(script.script)
        if int(reached) < self.min_replicas:
            raise ReplicasBehind(
                f"NOREPLICAS {name}: {int(reached)} of the {self.min_replicas} replicas "
                f"DURABLE_REDIS_MIN_REPLICAS asks for acknowledged it within "
                f"{self.min_replicas_timeout_ms}ms"
            )
        return reply

    # -- the producer's (called from apply_async) -----------------------------

    def enqueue(
        self,
        job_id: str,
        *,
        task: str,
        policy: str,
        payload: Payload,
        countdown_ms: int = 0,
        broker_holds: bool = True,
        sweeper_grace_ms: int = 0,
    ) -> Enqueued:
        """Write a job's record before its first message goes out (state ``queued``).

        ``broker_holds``: a broker message carries the job (at once or on its
        countdown); False for a countdown only the due set holds.
        """
        k = self.keys
        reply = self._run(
            "enqueue",
            [k.job(job_id), k.unclaimed, k.due],
            [
                job_id, task, policy, payload.args, payload.kwargs, payload.options,
                payload.queue, countdown_ms, "broker" if broker_holds else "redis",
                sweeper_grace_ms,
            ],
        )  # fmt: skip
        if reply[0] == "new":
            return Enqueued(True, created_ms=int(reply[1]), due_ms=int(reply[2]))
        return Enqueued(False, state=str(reply[1]))

    def forget(self, job_id: str, created_ms: int) -> bool:
        """Remove the record ``enqueue`` made (created at ``created_ms``) if still unclaimed."""
        k = self.keys
        return bool(self._run("forget", [k.job(job_id), k.unclaimed, k.due], [job_id, created_ms]))

    # -- the attempt's own transitions (called from the task) ---------------

    def claim(
        self,
        job_id: str,
        attempt: int,
        *,
        task: str,
        policy: str,
        owner: str,
        lease_ms: int,
        payload: Payload | None = None,
        token: str = "",
    ) -> Claimed | Dropped | None:
        """Start ``attempt`` if it is the job's next one.

        Returns None when the job has no record and no ``payload`` was given:
        call again with the delivery's payload to make the record from it.
        ``token`` (one per delivery) makes a claim safe to run again: the same
        claim run twice (its reply lost) answers Claimed both times.
        """
        k = self.keys
        sent = ("1", payload.args, payload.kwargs, payload.queue) if payload else ("0", "", "", "")
        reply = self._run(
            "claim",
            [k.job(job_id), k.due, k.leases, k.retrying, k.unclaimed, k.pauses, k.deferred],
            [job_id, attempt, task, policy, owner, lease_ms, *sent, token],
        )
        if reply[0] == "ok":
            return Claimed(now_ms=int(reply[1]), fields=_pairs(reply[2:]))
        if reply[0] == "missing":
            return None
        return Dropped(why=str(reply[1]), state=str(reply[2]), attempt=int(reply[3] or 0))

    def take_budget(self, name: str, interval_ms: float) -> tuple[int, int] | None:
        """Take the next slot of retry budget ``name`` (one per ``interval_ms``, shared
        by every worker): None when it is now, else (slot, now) in ms, Redis clock."""
        reply = self._run("budget", [self.keys.budget(name)], [repr(float(interval_ms))])
        return None if reply[0] == "go" else (int(reply[1]), int(reply[2]))

    def wait_for_budget(self, job_id: str, attempt: int, slot_ms: int) -> Dropped | None:
        """Put the job whose delivery for ``attempt`` found the budget used up back
        to wait for ``slot_ms`` (due set, no attempt counted); a Dropped when that
        delivery was not the job's next attempt anyway."""
        k = self.keys
        reply = self._run("budget_wait", [k.job(job_id), k.due], [job_id, attempt, slot_ms])
        if reply[0] == "waiting":
            return None
        return Dropped(why=str(reply[1]), state=str(reply[2]), attempt=int(reply[3] or 0))

    def succeed(
        self, job_id: str, attempt: int, owner: str, retention_ms: int,
        history: int = DEFAULT_HISTORY_ATTEMPTS,
    ) -> bool:  # fmt: skip
        """Record the success; ``history``: attempts of history the job keeps (0: none)."""
        k = self.keys
        reply = self._run(
            "succeed",
            [k.job(job_id), k.leases, k.ended(JobState.SUCCEEDED), k.stuck, k.history(job_id)],
            [job_id, attempt, owner, retention_ms, history],
        )
        return bool(reply[0] == "ok")

    def fail(
        self,
        job_id: str,
        attempt: int,
        owner: str,
        *,
        event: str,
        error: str,
        reason: str,
        give_up: bool,
        delay_ms: int = 0,
        sweeper_grace_ms: int = 0,
        max_retrying: int | None = None,
        retention_ms: int,
        history: int = DEFAULT_HISTORY_ATTEMPTS,
        worker: str | None = None,
        token: str = "",
    ) -> FailOutcome:
        """Record a failed attempt and carry out the decision taken for it.

        ``history``: attempts of history the job keeps (0: none); ``worker``: the
        one that ran the attempt, when it is not ``owner`` (a sweeper judging a
        lost attempt); ``token``: the claim token of its delivery, which makes
        the call safe to run again (a second run answers as the first did).
        """
        k = self.keys
        reply = self._run(
            "fail",
            [
                k.job(job_id), k.leases, k.due, k.retrying, k.parked, k.ended(JobState.DEAD),
                k.stats, k.stuck, k.history(job_id),
            ],
            [
                job_id, attempt, owner, event, error, reason,
                "dead" if give_up else "retry", delay_ms, sweeper_grace_ms,
                -1 if max_retrying is None else max_retrying, retention_ms,
                history, truncated(error, HISTORY_TEXT_CHARS),
                truncated(reason, HISTORY_TEXT_CHARS), worker or owner, token,
            ],
        )  # fmt: skip
        kind = FailKind(reply[0])
        if kind is FailKind.STALE:
            return FailOutcome(kind, state=str(reply[1]))
        if kind is FailKind.RETRY:
            payload = Payload(*(str(part) for part in reply[3:7])) if len(reply) > 3 else None
            return FailOutcome(kind, now_ms=int(reply[1]), due_ms=int(reply[2]), payload=payload)
        return FailOutcome(kind, now_ms=int(reply[1]))

    def checkpoint(
        self, job_id: str, attempt: int, owner: str, data_json: str
    ) -> dict[str, str] | None:
        """Save progress and start a new streak; returns the job hash after it (None: stale).

        The caller replaces its view of the job with the answer: the script
        changed more than the checkpoint (the streak's counts and windows).
        """
        reply = self._run(
            "checkpoint", [self.keys.job(job_id), self.keys.stuck],
            [attempt, owner, data_json, job_id],
        )  # fmt: skip
        return _pairs(reply[1:]) if reply[0] == "ok" else None

    def renew(self, leases: Iterable[tuple[str, int]], owner: str, lease_ms: int) -> int:
        """Extend the leases of (job id, attempt) pairs this owner still holds."""
        pairs = list(leases)
        if not pairs:
            return 0
        keys = [self.keys.leases] + [self.keys.job(job_id) for job_id, _ in pairs]
        args: list[Any] = [lease_ms]
        for job_id, attempt in pairs:
            args += [job_id, attempt]
        args.append(owner)
        return int(self._run("renew", keys, args))

    def interrupt(self, job_id: str, attempt: int, node: str, event: str) -> bool:
        """End the lease of ``attempt`` now if it runs on ``node`` (its worker process died)."""
        k = self.keys
        return bool(
            self._run("interrupt", [k.job(job_id), k.leases], [job_id, attempt, f"{node}:", event])
        )

    # -- the sweeper ----------------------------------------------------------

    def take_due(self, limit: int, redispatch_ms: int) -> tuple[int, list[str]]:
        reply = self._run("take_due", [self.keys.due], [limit, redispatch_ms])
        return int(reply[0]), [str(i) for i in reply[1:]]

    def dispatched(self, ids: Sequence[str], safety_ms: int = 0) -> list[DueJob]:
        """For each id take_due returned: publish it now (state ``queued``) or not.

        A countdown-held retry is published only after a worker died, or once
        it is overdue by ``safety_ms`` (0: as soon as take_due returns it).
        """
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            self._run("dispatched", [k.job(job_id), k.due, k.last_death, k.pauses, k.deferred],
                      [job_id, safety_ms], client=pipe)  # fmt: skip
        jobs = []
        for job_id, row in zip(ids, pipe.execute(), strict=True):
            state, attempt, task, args, kwargs, queue, policy, first, options, event, held_by = (
                list(row) + [None] * 11
            )[:11]
            jobs.append(
                DueJob(
                    id=job_id, state=str(state), attempt=int(attempt or 0), task=task or "",
                    payload=Payload(args or "[]", kwargs or "{}", queue or "", options or ""),
                    policy=policy or "", first_failure_at=int(first) / 1000 if first else None,
                    last_event=event or None, budget_slot_taken=held_by == "budget",
                )
            )  # fmt: skip
        return jobs

    def take_unclaimed(self, published_before_ms: int, limit: int) -> list[DueJob]:
        """The oldest first attempts published before the cutoff and still unclaimed,
        at most ``limit``; each is re-scored to now (taken once per cutoff)."""
        if limit <= 0:
            return []
        k = self.keys
        ids = [
            str(i)
            for i in self.redis.zrangebyscore(
                k.unclaimed, "-inf", f"({published_before_ms}", start=0, num=limit
            )
        ]
        if not ids:
            return []
        reply = self._run(
            "take_unclaimed", [k.unclaimed, *(k.job(i) for i in ids)], [published_before_ms, *ids]
        )
        jobs = []
        for at in range(0, len(reply), 7):
            row = [str(part) for part in reply[at : at + 7]]
            job_id, task, args, kwargs, queue, options, policy = row
            jobs.append(
                DueJob(
                    id=job_id, state="queued", attempt=0, task=task,
                    payload=Payload(args or "[]", kwargs or "{}", queue, options),
                    policy=policy, first_failure_at=None,
                )
            )  # fmt: skip
        return jobs

    def heartbeat(
        self, node: str, dead_after_ms: int, capacity: int = 0
    ) -> tuple[int, list[str]]:
        """Say ``node`` is alive (its worker may hold ``capacity`` unstarted messages).

        Returns Redis' now (ms) and the nodes silent for ``dead_after_ms`` (now gone).
        """
        k = self.keys
        reply = self._run("nodes", [k.nodes, k.last_death, k.node_capacity],
                          [node, "beat", dead_after_ms, capacity or ""])  # fmt: skip
        return int(reply[0]), [str(n) for n in reply[1:]]

    def lost_messages(self) -> int:
        """This worker's broker connection was re-made: the countdown messages it
        held are gone until the visibility timeout. Counted as a worker death
        (from now); returns Redis' now (ms)."""
        return int(self._run("lost_messages", [self.keys.last_death], []))

    def pull_held(self, died_ms: int, within_ms: int, limit: int = 1000) -> int:
        """After a death noticed at ``died_ms``: bring forward the due entries of
        retries a broker message held since before then, to their due time.

        Held entries sit at most ``within_ms`` after ``died_ms`` (the longest
        countdown plus the grace and the safety margin); the scan reads that
        window in pages of ``limit``. Returns how many entries moved.
        """
        k = self.keys
        # Read the window first, then pull: a pulled entry moves inside it, which
        # would shift the pages of a scan that pulled as it went.
        window: list[str] = []
        while True:
            page = self.redis.zrangebyscore(
                k.due, f"({died_ms}", died_ms + within_ms, start=len(window), num=limit
            )
            window += [str(i) for i in page]
            if len(page) < limit:
                break
        moved = 0
        for at in range(0, len(window), limit):
            pipe = self.redis.pipeline(transaction=False)
            for job_id in window[at : at + limit]:
                self._run("pull_held", [k.job(job_id), k.due], [job_id, died_ms], client=pipe)
            moved += sum(int(n) for n in pipe.execute())
        return moved

    def leave(self, node: str) -> None:
        """A clean shutdown: ``node`` is gone, and that is no death."""
        k = self.keys
        self._run("nodes", [k.nodes, k.last_death, k.node_capacity], [node, "leave", 0, ""])

    def fleet_capacity(self, dead: Sequence[str], unknown: int) -> int:
        """Messages the whole fleet (live nodes and ``dead``) may hold unstarted; then
        forget the dead nodes' entries. A node that never said counts ``unknown``."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrange(k.nodes, 0, -1)
        pipe.hgetall(k.node_capacity)
        live, capacities = pipe.execute()
        nodes = {str(n) for n in live} | set(dead)
        total = sum(int(capacities.get(node) or unknown) for node in nodes)
        if dead:
            self.redis.hdel(k.node_capacity, *dead)
        return total

    def release_hold(self, job_id: str) -> None:
        """The countdown of a retry was not published: let a sweeper publish it when due.

        A plain HDEL: at worst it releases a later hold of the same job, which
        costs one extra message that claim drops.
        """
        self.redis.hdel(self.keys.job(job_id), "held")

    def expired_leases(self, limit: int) -> tuple[int, list[str]]:
        reply = self._run("expired", [self.keys.leases], [limit])
        return int(reply[0]), [str(i) for i in reply[1:]]

    def take_lease(self, job_id: str, owner: str, lease_ms: int) -> Claimed | None:
        k = self.keys
        reply = self._run("take_lease", [k.job(job_id), k.leases], [job_id, owner, lease_ms])
        if reply[0] != "ok":
            return None
        return Claimed(now_ms=int(reply[1]), fields=_pairs(reply[2:]))

    def trim_ended(self) -> int:
        """Drop index entries of records that have expired; returns how many."""
        now_ms = self.now_ms()
        pipe = self.redis.pipeline(transaction=False)
        for state in ENDED_STATES:
            pipe.zremrangebyscore(self.keys.ended(state), "-inf", now_ms)
        return sum(int(n) for n in pipe.execute()) + self._trim_stuck()

    def _trim_stuck(self, limit: int = 1000) -> int:
        # Stuck jobs leave the index in the scripts that end their streak; this
        # only catches entries whose record vanished some other way.
        ids = self.index_ids(self.keys.stuck, 0, limit)
        if not ids:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.exists(self.keys.job(job_id))
        gone = [job_id for job_id, found in zip(ids, pipe.execute(), strict=True) if not found]
        return int(self.redis.zrem(self.keys.stuck, *gone)) if gone else 0

    def add_stats(self, counts: dict[str, int]) -> None:
        """Add to the metrics counters (``recoveries:<kind>``...), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for name, n in counts.items():
            if n:
                pipe.hincrby(self.keys.stats, name, n)
        if len(pipe):
            pipe.execute()

    # -- operators ------------------------------------------------------------

    def kill(self, job_id: str, reason: str, retention_ms: int, record_unknown: bool) -> list[str]:
        k = self.keys
        reply = self._run(
            "kill",
            [
                k.job(job_id), k.due, k.leases, k.retrying, k.parked,
                k.ended(JobState.KILLED), k.stuck, k.unclaimed, k.history(job_id), k.deferred,
            ],
            [job_id, reason, retention_ms, "1" if record_unknown else "0"],
        )  # fmt: skip
        return [str(part) for part in reply]

    def resume(self, job_id: str, max_retrying: int | None, new_streak: bool) -> list[str]:
        k = self.keys
        reply = self._run(
            "resume",
            [
                k.job(job_id), k.due, k.retrying, k.parked, k.ended(JobState.DEAD), k.stuck,
                k.history(job_id),
            ],
            [job_id, -1 if max_retrying is None else max_retrying, "1" if new_streak else "0"],
        )
        return [str(part) for part in reply]

    def mark_stuck(self, job_id: str, alert_after_ms: int) -> tuple[int, int] | None:
        """Flag a failing job as stuck, once per streak, if it has failed for ``alert_after_ms``.

        Returns (first_failure_at ms, now ms) the first time, else None.
        """
        k = self.keys
        reply = self._run("stuck", [k.job(job_id), k.stuck], [job_id, alert_after_ms])
        if reply[0] != "alerted":
            return None
        return int(reply[1]), int(reply[2])

    def purge(self, ids: Sequence[str], state: JobState, cutoff_ms: int) -> tuple[int, int]:
        """Delete ended records of ``state`` last updated at or before ``cutoff_ms``.

        Returns (records deleted, index entries removed).
        """
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            self._run(
                "purge", [k.job(job_id), k.ended(state), k.stuck, k.history(job_id)],
                [job_id, state.value, cutoff_ms], client=pipe,
            )  # fmt: skip
        replies = [int(n) for n in pipe.execute()]
        return replies.count(1), replies.count(1) + replies.count(2)

    def pause(self, target: str, entry_json: str) -> bool:
        """Pause ``policy:<P>`` or ``task:<T>``; False if it was paused already (kept)."""
        return bool(self.redis.hsetnx(self.keys.pauses, target, entry_json))

    def pauses(self) -> dict[str, str]:
        return cast(dict[str, str], self.redis.hgetall(self.keys.pauses))

    def end_pause(self, target: str) -> bool:
        """Stop deferring new deliveries of ``target``; its deferred jobs wait for release."""
        return bool(self.redis.hdel(self.keys.pauses, target))

    def deferred_ids(self) -> list[str]:
        return [str(i) for i in self.redis.zrange(self.keys.deferred, 0, -1)]

    def release(
        self, ids: Sequence[str], jitters: Sequence[float], start_ms: int, interval_ms: float,
        slot: int,
    ) -> tuple[int, int]:  # fmt: skip
        """Release those of ``ids`` no pause holds any more, one per ``interval_ms`` from
        ``start_ms`` (slots counted from ``slot``); returns (released, slots used)."""
        k = self.keys
        args: list[Any] = [start_ms, interval_ms, slot]
        for job_id, jitter in zip(ids, jitters, strict=True):
            args += [job_id, jitter]
        reply = self._run(
            "release", [k.pauses, k.deferred, k.due, *(k.job(i) for i in ids)], args
        )
        return int(reply[0]), int(reply[1])

    def retry_now(self, job_id: str) -> list[str]:
        reply = self._run("retry_now", [self.keys.job(job_id), self.keys.due], [job_id])
        return [str(part) for part in reply]

    # -- reads ------------------------------------------------------------------

    def now_ms(self) -> int:
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def get(self, job_id: str) -> dict[str, str] | None:
        fields = cast(dict[str, str], self.redis.hgetall(self.keys.job(job_id)))
        return fields or None

    def history(self, job_id: str) -> list[str]:
        """The job's last attempts, oldest first: JSON entries (none for records
        made before history existed, or with ``DURABLE_HISTORY_ATTEMPTS=0``)."""
        return [str(entry) for entry in self.redis.lrange(self.keys.history(job_id), 0, -1)]

    def get_many(self, ids: Sequence[str]) -> list[dict[str, str] | None]:
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self.keys.job(job_id))
        return [fields or None for fields in pipe.execute()]

    def index_keys(self, state: JobState) -> tuple[str, ...]:
        """The indexes that list jobs of ``state``: queued jobs are in the due set
        (a retry published, or a first attempt with a countdown) or unclaimed."""
        if state is JobState.QUEUED:
            return (self.keys.unclaimed, self.keys.due)
        return (self.index_key(state),)

    def exists(self, job_id: str) -> bool:
        return bool(self.redis.exists(self.keys.job(job_id)))

    def ids_with_prefix(self, prefix: str, limit: int, count: int = 5000) -> list[str]:
        """Up to ``limit`` indexed job ids that start with ``prefix``: ZSCAN of each index.

        Every record is in an index (unclaimed, due, leases, parked, ended:<state>), so
        no key scan is needed. ``prefix`` must hold no glob character (job ids
        never do: see ``validate_job_id``). Cost: the indexes' size / ``count``
        round trips, fewer when ``limit`` is reached early.
        """
        found: dict[str, None] = {}
        k = self.keys
        indexes = (k.unclaimed, k.due, k.leases, k.parked, *(k.ended(s) for s in ENDED_STATES))
        for key in indexes:
            for member, _score in self.redis.zscan_iter(key, match=f"{prefix}*", count=count):
                found[str(member)] = None
                if len(found) >= limit:
                    return list(found)
        return list(found)

    def index_key(self, state: JobState) -> str:
        """The main index of ``state`` (retrying and queued retries share the due set)."""
        if state in (JobState.RETRYING, JobState.QUEUED):
            return self.keys.due
        if state is JobState.RUNNING:
            return self.keys.leases
        if state is JobState.PARKED:
            return self.keys.parked
        return self.keys.ended(state)

    def index_ids(self, key: str, offset: int, count: int) -> list[str]:
        return [str(i) for i in self.redis.zrange(key, offset, offset + count - 1)]

    def index_size(self, key: str) -> int:
        return int(self.redis.zcard(key))

    def retrying_counts(self) -> dict[str, int]:
        counts = cast(dict[str, str], self.redis.hgetall(self.keys.retrying))
        return {policy: int(n) for policy, n in counts.items()}

    def parked_ids(self, count: int) -> list[str]:
        return self.index_ids(self.keys.parked, 0, count)

    def index_score(self, key: str, job_id: str) -> float | None:
        score = self.redis.zscore(key, job_id)
        return None if score is None else float(score)

    def in_index(self, key: str, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` that the index holds (one ZMSCORE)."""
        if not ids:
            return set()
        scores = self.redis.zmscore(key, list(ids))
        return {job_id for job_id, score in zip(ids, scores, strict=True) if score is not None}

    def expires_at_ms(self, job_id: str) -> int | None:
        """When the job's record expires (ended records), or None."""
        # PTTL and TIME rather than PEXPIRETIME, which Redis 6.2 lacks.
        pipe = self.redis.pipeline(transaction=True)
        pipe.time()
        pipe.pttl(self.keys.job(job_id))
        (seconds, micros), ttl_ms = pipe.execute()
        return int(seconds) * 1000 + int(micros) // 1000 + int(ttl_ms) if ttl_ms > 0 else None

    def index_sizes(self) -> dict[str, int]:
        """Entries in each index, by index name: one round trip of ZCARDs."""
        k = self.keys
        names = {
            "due": k.due, "unclaimed": k.unclaimed, "leases": k.leases, "parked": k.parked,
            "stuck": k.stuck,
            **{state.value: k.ended(state) for state in ENDED_STATES},
        }  # fmt: skip
        pipe = self.redis.pipeline(transaction=False)
        for key in names.values():
            pipe.zcard(key)
        return {name: int(n) for name, n in zip(names, pipe.execute(), strict=True)}

    def sweeper_health(self, live_within_ms: int) -> tuple[int, int | None]:
        """(sweepers that beat within ``live_within_ms``, ms the oldest due entry is
        overdue or None): one round trip, whatever the number of jobs.

        Sweepers push every entry they take forward (take_due), so an entry
        behind now means no sweeper has reached it yet.
        """
        k = self.keys
        pipe = self.redis.pipeline(transaction=True)
        pipe.time()
        pipe.zrange(k.nodes, 0, -1, withscores=True)
        pipe.zrange(k.due, 0, 0, withscores=True)
        (seconds, micros), nodes, oldest = pipe.execute()
        now = int(seconds) * 1000 + int(micros) // 1000
        live = sum(1 for _node, beat in nodes if beat >= now - live_within_ms)
        overdue = now - int(oldest[0][1]) if oldest and oldest[0][1] < now else None
        return live, overdue

    def stats(self) -> dict[str, int]:
        counts = cast(dict[str, str], self.redis.hgetall(self.keys.stats))
        return {name: int(n) for name, n in counts.items()}

    # -- the registry of the policies workers serve ------------------------------

    def write_policies(self, entries: dict[str, str]) -> int:
        """Set each policy name's entry (overwriting it); returns how many names are kept."""
        pipe = self.redis.pipeline(transaction=False)
        if entries:
            mapping: dict[Any, Any] = dict(entries)
            pipe.hset(self.keys.policies, mapping=mapping)
        pipe.hlen(self.keys.policies)
        return int(pipe.execute()[-1])

    def policy_entry(self, name: str) -> str | None:
        entry = self.redis.hget(self.keys.policies, name)
        return None if entry is None else str(entry)

    def policy_entries(self) -> dict[str, str]:
        return cast(dict[str, str], self.redis.hgetall(self.keys.policies))

    def drop_policies(self, names: Sequence[str]) -> None:
        if names:
            self.redis.hdel(self.keys.policies, *names)

    def sample_ids(self, key: str, count: int) -> list[str]:
        """All of an index's ids if it holds at most ``count``, else a random ``count`` of them."""
        if self.index_size(key) <= count:
            return self.index_ids(key, 0, count)
        return [str(i) for i in cast(list[str], self.redis.zrandmember(key, count))]

    def fields_of(self, ids: Sequence[str], names: Sequence[str]) -> list[list[str | None]]:
        """Some fields of many jobs, in one pipelined round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self.keys.job(job_id), list(names))
        return [list(row) for row in pipe.execute()]
