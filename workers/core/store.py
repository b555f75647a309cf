"""The Redis state of every job: the only module that knows key names.

Each state transition is one Lua script in ``workers/lua/`` (its header names
every key and argument); this module passes every key in KEYS, each from the
job's shard (:class:`~workers.core.keys.Layout`: one shard keeps the original
names, several put each job's keys in one Redis Cluster hash slot), and maps
each script's answer to a small typed value. Reads and sweeper steps that span
shards go out in pipelines (on a Cluster, one round trip per master). Times are Redis' own clock, in
milliseconds, read inside the scripts (``TIME``): workers whose clocks drift
still agree on what is due and whose lease has ended.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from typing import Any, cast

import redis
from redis.exceptions import ClusterDownError, SlotNotCoveredError

from workers.core.failures import truncated
from workers.core.keys import Keys, Layout
from workers.core.outcomes import (
    Claimed,
    DeliveryAck,
    Dropped,
    DueJob,
    Enqueued,
    FailKind,
    FailOutcome,
    NewJob,
    Payload,
)
from workers.core.records import (
    DEFAULT_HISTORY_ATTEMPTS,
    ENDED_STATES,
    HISTORY_TEXT_CHARS,
    LONG_FIELDS,
    LONG_PREFIXES,
    SHORT_FIELDS,
    SHORT_MARK,
    SHORT_PREFIXES,
    JobState,
    long_field_names,
    short_field_name,
)
from workers.core.settings import (
    Settings,
    is_cluster_url,
    is_sentinel_url,
    parse_cluster_url,
    parse_sentinel_url,
)

NODE_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, ClusterDownError)
"""What a Redis node that did not answer raises (on a Cluster: a lost master's
shards). What needs only some shards goes on without that node's: a sweeper pass
sweeps the other masters, ``retryctl list`` lists their jobs and names the rest."""

LUA_SCRIPTS = (
    "enqueue", "forget", "claim", "succeed", "fail", "checkpoint", "renew", "interrupt",
    "take_lease", "take_due", "dispatched", "take_unclaimed", "expired", "kill", "resume",
    "retry_now", "nodes", "stuck", "purge", "release", "pull_held", "lost_messages",
    "budget", "budget_wait",
)  # fmt: skip


def _lua_text(*parts: str) -> str:
    return resources.files("workers.core").joinpath("lua", *parts).read_text()


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _renaming(names: dict[str, str], prefixes: dict[str, str]) -> list[str]:
    """The body of a Lua function ``(name)`` that renames by ``names``, else by the
    first of ``prefixes`` the name starts with: an if-chain, no table (see record.lua)."""
    lines = [f"  if name == {_lua_string(old)} then return {_lua_string(new)}"
             for old, new in names.items()]  # fmt: skip
    lines[1:] = [line.replace("  if", "  elseif", 1) for line in lines[1:]]
    for old, new in prefixes.items():
        lines.append(f"  elseif string.sub(name, 1, {len(old)}) == {_lua_string(old)} then "
                     f"return {_lua_string(new)} .. string.sub(name, {len(old) + 1})")  # fmt: skip
    return [*lines, "  end", "  return name"]


def record_library(short_fields: bool) -> str:
    """``lua/lib/record.lua`` with its renamings rendered from ``records.SHORT_FIELDS``
    (one mapping of field names for Python and the scripts) and the names a new
    record is written with."""
    rendered = {
        "return name -- rendered: an if-chain, long name -> short name":
            _renaming(SHORT_FIELDS, SHORT_PREFIXES),
        "return name -- rendered: an if-chain, short name -> long name":
            _renaming(LONG_FIELDS, LONG_PREFIXES),
        "local NEW_RECORDS_SHORT = false -- rendered: the names a new record is written with":
            [f"local NEW_RECORDS_SHORT = {str(short_fields).lower()}"],
        "local SHORT_MARK = 'st' -- rendered: the field every short record holds":
            [f"local SHORT_MARK = {_lua_string(SHORT_MARK)}"],
    }  # fmt: skip
    lines: list[str] = []
    for line in _lua_text("lib", "record.lua").splitlines():
        lines += rendered.pop(line.strip(), [line])
    if rendered:
        raise RuntimeError(f"lua/lib/record.lua lost the lines to render: {sorted(rendered)}")
    return "\n".join(lines)


def load_script(name: str, *, short_fields: bool = False) -> str:
    """The text of ``lua/<name>.lua``, with each ``-- include: <lib>`` line replaced
    by ``lua/lib/<lib>.lua`` (Redis scripts cannot import; shared steps live once),
    after the record library every script starts with (``short_fields``: new
    records are written with short field names, ``DURABLE_RECORD_FIELDS=short``)."""
    lines = [record_library(short_fields)]
    for line in _lua_text(f"{name}.lua").splitlines():
        if line.startswith("-- include: "):
            line = _lua_text("lib", line.removeprefix("-- include: ").strip() + ".lua")
        lines.append(line)
    return "\n".join(lines) + "\n"


# The record field names this release reads, as its heartbeats say.
FIELDS_READ = "long,short"
# Script calls one pipeline sends at most (a group of 10,000 members enqueues in
# ten round trips, each of a bounded request and reply).
PIPELINE_CALLS = 1000
# The attempt's own path: what a worker acks a message after. With
# ``min_replicas`` each of these waits (WAIT) for that many replicas.
REPLICATED = frozenset({"enqueue", "claim", "succeed", "fail", "checkpoint"})


def _enqueued(reply: Any) -> Enqueued:
    """The answer of the ``enqueue`` script."""
    if reply[0] == "new":
        return Enqueued(True, created_ms=int(reply[1]), due_ms=int(reply[2]))
    return Enqueued(False, state=str(reply[1]))


def _server_of(kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Host, port, socket path, database and user of a pool's connections (absent and
    empty alike: redis-py and kombu fill them in differently)."""
    get = kwargs.get
    return (get("host") or None, get("port") or None, get("path") or None,
            int(get("db") or 0), get("username") or None)  # fmt: skip


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
    master that the sentinels name now, which follows it through a failover; for
    ``redis+cluster://`` URLs a ``RedisCluster`` (commands and EVALSHA routed by
    their keys' slot, MOVED/ASK followed)."""
    if is_cluster_url(url):
        from redis.cluster import ClusterNode

        cluster = parse_cluster_url(url)
        options.pop("health_check_interval", None)  # per connection; RedisCluster refuses it
        return cast(redis.Redis, _Cluster(
            startup_nodes=[ClusterNode(host, port) for host, port in cluster.nodes],
            username=cluster.username, password=cluster.password, ssl=cluster.tls,
            decode_responses=True, **options,
        ))  # fmt: skip
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


def _unreachable(exc: Exception) -> redis.ConnectionError:
    error = redis.ConnectionError(f"Redis Cluster: {exc}")
    error.__cause__ = exc
    return error


class _Cluster(redis.RedisCluster):
    """A RedisCluster whose "slot not covered" (a master lost, no replica promoted
    yet) is a ``redis.ConnectionError``: redis-py raises it as a bare exception, but
    for the layer it is an unreachable Redis, waited on like any other."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().execute_command(*args, **kwargs)
        except SlotNotCoveredError as exc:
            raise _unreachable(exc) from exc

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return execute(*args, **kwargs)
            except SlotNotCoveredError as exc:
                raise _unreachable(exc) from exc

        pipe.execute = guarded
        return pipe


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}


_TIME_AND_PTTL = """
local t = redis.call('TIME')
return {t[1] * 1000 + math.floor(t[2] / 1000), redis.call('PTTL', KEYS[1])}
"""


def _scored(rows: Sequence[Any]) -> list[tuple[float, str]]:
    """ZRANGE ... WITHSCORES rows (pairs, or a flat list from execute_command) as
    (score, id), the order heapq.merge needs."""
    if rows and not isinstance(rows[0], (list, tuple)):
        return [(float(rows[i + 1]), str(rows[i])) for i in range(0, len(rows), 2)]
    return [(float(score), str(job_id)) for job_id, score in rows]


class Store:
    """Typed access to the job state in one Redis database."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "durable",
        *,
        shards: int = 1,
        min_replicas: int = 0,
        min_replicas_timeout_ms: int = 1000,
        short_fields: bool = False,
    ) -> None:
        """``shards``: the key layout (``DURABLE_REDIS_SHARDS``); 1 keeps the original
        key names. ``keys`` is shard 0's names (the only shard's, with one).
        ``short_fields``: new records get two-character field names
        (``DURABLE_RECORD_FIELDS=short``); records of either kind are read."""
        self.redis = client
        self.layout = Layout(prefix, shards)
        self.keys: Keys = self.layout.shard(0)
        self.fleet: Keys = self.layout.fleet
        self.cluster = isinstance(client, redis.RedisCluster)
        self.min_replicas = min_replicas
        self.min_replicas_timeout_ms = min_replicas_timeout_ms
        self._scripts = {
            name: client.register_script(load_script(name, short_fields=short_fields))
            for name in LUA_SCRIPTS
        }

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = "durable",
        *,
        shards: int = 1,
        sentinel_master: str | None = None,
        sentinel_password: str | None = None,
        min_replicas: int = 0,
        min_replicas_timeout_ms: int = 1000,
        short_fields: bool = False,
        **options: Any,
    ) -> Store:
        options.setdefault("socket_timeout", 10)
        options.setdefault("socket_connect_timeout", 5)
        options.setdefault("health_check_interval", 30)
        client = connect(
            url, sentinel_master=sentinel_master, sentinel_password=sentinel_password, **options
        )
        return cls(client, prefix, shards=shards, min_replicas=min_replicas,
                   min_replicas_timeout_ms=min_replicas_timeout_ms,
                   short_fields=short_fields)  # fmt: skip

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> Store:
        """The store of a deployment: its URL (plain or Sentinel), prefix and WAIT."""
        password = settings.redis_sentinel_password
        return cls.from_url(
            settings.redis_url, prefix=settings.key_prefix, shards=settings.effective_redis_shards,
            sentinel_master=settings.redis_sentinel_master,
            sentinel_password=password.get_secret_value() if password else None,
            min_replicas=settings.redis_min_replicas,
            min_replicas_timeout_ms=int(settings.redis_min_replicas_timeout * 1000),
            short_fields=settings.record_fields == "short",
            **options,
        )  # fmt: skip

    def _run(self, name: str, keys: list[str], args: list[Any], client: Any = None) -> Any:
        if client is None and self.min_replicas > 0 and name in REPLICATED:
            return self._run_replicated(name, keys, args)
        if self.cluster:
            return self._run_on_cluster(name, keys, args, client)
        return self._scripts[name](keys=keys, args=args, client=client)

    def _run_on_cluster(self, name: str, keys: list[str], args: list[Any], client: Any) -> Any:
        """EVALSHA routed by the keys' slot. redis-py's Script would load a missing
        script on every master (one that is down fails it) and is blocked in a cluster
        pipeline: a missing script is loaded on the keys' own node only, and in a
        pipeline NOSCRIPT comes back in the replies (``_pipelined`` runs it again)."""
        script = self._scripts[name]
        if client is not None:
            return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        cluster = cast(redis.RedisCluster, self.redis)
        for loaded in (False, True):
            try:
                return cluster.evalsha(script.sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                if loaded:
                    raise
                node = cluster.get_node_from_key(keys[0])
                cluster.execute_command("SCRIPT LOAD", script.script, target_nodes=node)
        raise AssertionError("unreachable")  # pragma: no cover

    def _pipelined(
        self, calls: Sequence[tuple[str, list[str], list[Any]]], *, keep_errors: bool = False
    ) -> list[Any]:
        """Several scripts in pipelines of at most ``PIPELINE_CALLS`` (on a Cluster:
        one round trip per node each).

        A script a node did not have yet (NOSCRIPT: a promoted replica's empty
        cache) ran nothing there: it is run again on its own, which loads it.
        A call's error is raised, or with ``keep_errors`` given back in its place
        (the other calls ran).
        """
        if len(calls) <= 1 and not keep_errors:
            return [self._run(*call) for call in calls]
        replies: list[Any] = []
        for start in range(0, len(calls), PIPELINE_CALLS):
            pipe = self.redis.pipeline(transaction=False)
            for name, keys, args in calls[start : start + PIPELINE_CALLS]:
                self._run(name, keys, args, client=pipe)
            replies += pipe.execute(raise_on_error=False)
        for at, reply in enumerate(replies):
            if isinstance(reply, redis.exceptions.NoScriptError):
                try:
                    replies[at] = self._run(*calls[at])
                except redis.RedisError as exc:
                    if not keep_errors:
                        raise
                    replies[at] = exc
            elif isinstance(reply, Exception) and not keep_errors:
                raise reply
        return replies

    def _keys_of(self, shards: Sequence[int] | None) -> Sequence[Keys]:
        """The key names of ``shards`` (default: every shard)."""
        return self.layout.all if shards is None else [self.layout.shard(n) for n in shards]

    def _by_shard(self, ids: Iterable[str]) -> dict[int, list[str]]:
        groups: dict[int, list[str]] = {}
        for job_id in ids:
            groups.setdefault(self.layout.shard_of(job_id), []).append(job_id)
        return groups

    def _waiting_elsewhere(self, job_id: str, policy: str | None) -> int:
        """Jobs of ``policy`` waiting in every shard but ``job_id``'s (max_retrying
        counts the whole fleet's): one pipelined read; 0 with one shard."""
        if not self.layout.sharded:
            return 0
        if policy is None:
            policy = self.field(job_id, "policy")
            if policy is None:
                return 0
        own = self.layout.shard_of(job_id)
        pipe = self.redis.pipeline(transaction=False)
        for n, keys in enumerate(self.layout.all):
            if n != own:
                pipe.hget(keys.retrying, policy)
        return sum(max(int(n or 0), 0) for n in pipe.execute())

    def _run_replicated(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """The script, then WAIT on the same connection (WAIT counts the replicas that
        have this connection's writes); fewer than ``min_replicas`` is a failed write.
        On a Cluster both go to the master of the keys' slot, on that node's own
        connection (WAIT has no key to route by)."""
        if not self.cluster:
            return self._script_then_wait(self.redis, name, keys, args)
        cluster = cast(redis.RedisCluster, self.redis)
        try:
            node_client = cluster.get_redis_connection(cluster.get_node_from_key(keys[0]))
            return self._script_then_wait(node_client, name, keys, args)
        except (SlotNotCoveredError, redis.exceptions.MovedError, redis.ConnectionError,
                redis.TimeoutError) as exc:  # fmt: skip
            # The slot's master died or moved (a failover): relearn the slot map, so
            # the caller's next try (it waits on an unreachable Redis) finds the new one.
            with contextlib.suppress(redis.RedisError):
                cluster.nodes_manager.initialize()
            raise _unreachable(exc) from exc

    def _script_then_wait(
        self, client: redis.Redis, name: str, keys: list[str], args: list[Any]
    ) -> Any:
        script = self._scripts[name]
        # EVALSHA itself, not the Script in the pipeline: that costs a SCRIPT EXISTS
        # round trip per call. NOSCRIPT (a promoted replica's empty cache) ran nothing.
        for loaded in (False, True):
            pipe = client.pipeline(transaction=False)
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            pipe.wait(self.min_replicas, self.min_replicas_timeout_ms)
            try:
                reply, reached = pipe.execute()
                break
            except redis.exceptions.NoScriptError:
                if loaded:
                    raise
                client.script_load(script.script)
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
        job = NewJob(job_id, task, policy, payload, countdown_ms, broker_holds, sweeper_grace_ms)
        return _enqueued(self._run(*self._enqueue_call(job)))

    def enqueue_one(self, job: NewJob) -> Enqueued | redis.RedisError:
        """Write one record (as :meth:`enqueue`); its answer, or the error Redis gave."""
        try:
            return _enqueued(self._run(*self._enqueue_call(job)))
        except redis.RedisError as exc:
            return exc

    def enqueue_many(self, jobs: Sequence[NewJob]) -> list[Enqueued | redis.RedisError]:
        """Write several records pipelined (a round trip per ``PIPELINE_CALLS``; on a
        Cluster, per node); each job's answer, or the error Redis gave for it (the
        others are written).

        With ``min_replicas`` each record is written and waited for on its own, as
        :meth:`enqueue` does: a pipeline's writes would need a WAIT per node.
        """
        if self.min_replicas > 0 or len(jobs) <= 1:
            return [self.enqueue_one(job) for job in jobs]
        replies = self._pipelined([self._enqueue_call(job) for job in jobs], keep_errors=True)
        return [reply if isinstance(reply, redis.RedisError) else _enqueued(reply)
                for reply in replies]  # fmt: skip

    def _enqueue_call(self, job: NewJob) -> tuple[str, list[str], list[Any]]:
        k = self.layout.of(job.job_id)
        payload = job.payload
        return (
            "enqueue",
            [k.job(job.job_id), k.unclaimed, k.due],
            [
                job.job_id, job.task, job.policy, payload.args, payload.kwargs, payload.options,
                payload.queue, job.countdown_ms, "broker" if job.broker_holds else "redis",
                job.sweeper_grace_ms,
            ],
        )  # fmt: skip

    def enqueue_with_message(self, job: NewJob, queue_key: str, message: str) -> Enqueued:
        """Write ``job``'s record and push its first message (``message``, encoded as the
        broker's transport encodes it) onto the list ``queue_key``, in one script: both
        or neither. Only where the broker is this Redis (:meth:`serves`)."""
        name, keys, args = self._enqueue_call(job)
        return _enqueued(self._run(name, [*keys, queue_key], [*args, message]))

    def serves(self, pool: Any) -> bool:
        """Whether a client of ``pool`` (a broker's, e.g. kombu's Redis transport's) talks
        to this store's Redis, database and user: one Redis, not a Cluster or a master
        a Sentinel names (whose connections say no host). Never with ``min_replicas``:
        a record must be on the replicas (WAIT, after the script) before its message
        goes out, so the script cannot push the message itself."""
        if self.cluster or self.min_replicas > 0 or pool is None:
            return False
        mine = self.redis.connection_pool
        theirs = getattr(pool, "connection_kwargs", None)
        if mine.connection_class is not getattr(pool, "connection_class", None) or not theirs:
            return False
        ours = _server_of(mine.connection_kwargs)
        return bool(ours[0] or ours[2]) and ours == _server_of(theirs)

    def forget(self, job_id: str, created_ms: int) -> bool:
        """Remove the record ``enqueue`` made (created at ``created_ms``) if still unclaimed."""
        k = self.layout.of(job_id)
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
        k = self.layout.of(job_id)
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
        # A budget is the fleet's: its own key, in a script of its own (no job key
        # beside it, so any hash slot will do on a Cluster).
        reply = self._run("budget", [self.fleet.budget(name)], [repr(float(interval_ms))])
        return None if reply[0] == "go" else (int(reply[1]), int(reply[2]))

    def wait_for_budget(self, job_id: str, attempt: int, slot_ms: int) -> Dropped | None:
        """Put the job whose delivery for ``attempt`` found the budget used up back
        to wait for ``slot_ms`` (due set, no attempt counted); a Dropped when that
        delivery was not the job's next attempt anyway."""
        k = self.layout.of(job_id)
        reply = self._run("budget_wait", [k.job(job_id), k.due], [job_id, attempt, slot_ms])
        if reply[0] == "waiting":
            return None
        return Dropped(why=str(reply[1]), state=str(reply[2]), attempt=int(reply[3] or 0))

    def succeed(
        self, job_id: str, attempt: int, owner: str, retention_ms: int,
        history: int = DEFAULT_HISTORY_ATTEMPTS, ack: DeliveryAck | None = None,
    ) -> bool:  # fmt: skip
        """Record the success; ``history``: attempts of history the job keeps (0: none).
        ``ack``: the delivery to ack in the same script (whatever the answer)."""
        k = self.layout.of(job_id)
        reply = self._run(
            "succeed",
            [k.job(job_id), k.leases, k.ended(JobState.SUCCEEDED), k.stuck, k.history(job_id),
             *(ack.keys if ack else ())],
            [job_id, attempt, owner, retention_ms, history, *((ack.tag,) if ack else ())],
        )  # fmt: skip
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
        policy: str | None = None,
        ack: DeliveryAck | None = None,
    ) -> FailOutcome:
        """Record a failed attempt and carry out the decision taken for it.

        ``history``: attempts of history the job keeps (0: none); ``worker``: the
        one that ran the attempt, when it is not ``owner`` (a sweeper judging a
        lost attempt). ``policy``: the job's policy name, when the caller knows it
        (with several shards, ``max_retrying`` counts every shard's waiting jobs,
        read just before the script; read from the record when not given).
        ``token``: the claim token of its delivery, which makes the call safe to
        run again (a second run answers as the first did). ``ack``: the delivery to
        ack in the same script (whatever the answer).
        """
        k = self.layout.of(job_id)
        elsewhere = self._waiting_elsewhere(job_id, policy) if max_retrying is not None else 0
        reply = self._run(
            "fail",
            [
                k.job(job_id), k.leases, k.due, k.retrying, k.parked, k.ended(JobState.DEAD),
                k.stats, k.stuck, k.history(job_id), *(ack.keys if ack else ()),
            ],
            [
                job_id, attempt, owner, event, error, reason,
                "dead" if give_up else "retry", delay_ms, sweeper_grace_ms,
                -1 if max_retrying is None else max_retrying, retention_ms,
                history, truncated(error, HISTORY_TEXT_CHARS),
                truncated(reason, HISTORY_TEXT_CHARS), worker or owner, elsewhere, token,
                *((ack.tag,) if ack else ()),
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
            "checkpoint", [self.layout.of(job_id).job(job_id), self.layout.of(job_id).stuck],
            [attempt, owner, data_json, job_id],
        )  # fmt: skip
        return _pairs(reply[1:]) if reply[0] == "ok" else None

    def renew(self, leases: Iterable[tuple[str, int]], owner: str, lease_ms: int) -> int:
        """Extend the leases of (job id, attempt) pairs this owner still holds."""
        pairs = list(leases)
        if not pairs:
            return 0
        by_shard: dict[int, list[tuple[str, int]]] = {}
        for job_id, attempt in pairs:
            by_shard.setdefault(self.layout.shard_of(job_id), []).append((job_id, attempt))
        calls = []
        for shard, held in by_shard.items():
            k = self.layout.shard(shard)
            keys = [k.leases] + [k.job(job_id) for job_id, _ in held]
            args: list[Any] = [lease_ms]
            for job_id, attempt in held:
                args += [job_id, attempt]
            args.append(owner)
            calls.append(("renew", keys, args))
        return sum(int(n) for n in self._pipelined(calls))

    def interrupt(self, job_id: str, attempt: int, node: str, event: str) -> bool:
        """End the lease of ``attempt`` now if it runs on ``node`` (its worker process died)."""
        k = self.layout.of(job_id)
        return bool(
            self._run("interrupt", [k.job(job_id), k.leases], [job_id, attempt, f"{node}:", event])
        )

    # -- the sweeper ----------------------------------------------------------

    def shard_numbers(self, start: int = 0) -> list[int]:
        """Every shard, from ``start`` round (each sweeper starts somewhere else)."""
        n = self.layout.shards
        return [(start + i) % n for i in range(n)]

    def shard_groups(self, shards: Sequence[int]) -> list[list[int]]:
        """``shards`` split by the Redis node that holds each now (one group off a
        Cluster), each group in the given order: a sweeper step that fails on one
        master then leaves the other masters' shards done. Uncovered slots (a master
        lost, none promoted yet) form a group of their own."""
        if not self.cluster:
            return [list(shards)]
        cluster = cast(redis.RedisCluster, self.redis)
        groups: dict[str, list[int]] = {}
        for n in shards:
            try:
                node = str(cluster.get_node_from_key(self.layout.shard(n).due).name)
            except SlotNotCoveredError:
                node = ""
            groups.setdefault(node, []).append(n)
        return list(groups.values())

    def per_shard_limit(self, limit: int) -> int:
        """A pass's share of ``limit`` for each shard: a pass over every shard takes
        about ``limit`` entries in all, whatever the number of shards."""
        return max(1, -(-limit // self.layout.shards))

    def take_due(
        self, limit: int, redispatch_ms: int, shards: Sequence[int] | None = None
    ) -> tuple[int, list[str]]:
        """Take up to ``limit`` due entries of each of ``shards`` (default: every shard)."""
        chosen = self.shard_numbers() if shards is None else shards
        replies = self._pipelined(
            [("take_due", [self.layout.shard(n).due], [limit, redispatch_ms]) for n in chosen]
        )
        return (int(replies[0][0]) if replies else 0), [
            str(i) for reply in replies for i in reply[1:]
        ]

    def dispatched(self, ids: Sequence[str], safety_ms: int = 0) -> list[DueJob]:
        """For each id take_due returned: publish it now (state ``queued``) or not.

        A countdown-held retry is published only after a worker died, or once
        it is overdue by ``safety_ms`` (0: as soon as take_due returns it).
        """
        if not ids:
            return []
        # One shard: the script reads the last death itself (no extra round trip);
        # sharded, it is in the fleet's slot: read once here, passed as a value.
        sharded = self.layout.sharded
        died = ""
        if sharded:
            # With the fleet's master down no death is known: a held retry waits for
            # its safety time (never published twice), and due-set retries still go out.
            with contextlib.suppress(*NODE_UNREACHABLE):
                died = str(self.redis.get(self.fleet.last_death) or "")
        own = [] if sharded else [self.fleet.last_death]
        calls = []
        for job_id in ids:
            k = self.layout.of(job_id)
            calls.append(("dispatched", [k.job(job_id), k.due, k.pauses, k.deferred, *own],
                          [job_id, safety_ms, died]))  # fmt: skip
        jobs = []
        for job_id, row in zip(ids, self._pipelined(calls), strict=True):
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

    def take_unclaimed(
        self, published_before_ms: int, limit: int, shards: Sequence[int] | None = None
    ) -> list[DueJob]:
        """The oldest first attempts published before the cutoff and still unclaimed,
        at most ``limit`` (over ``shards``, default every shard); each is re-scored to
        now (taken once per cutoff)."""
        if limit <= 0:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for k in self._keys_of(shards):
            pipe.zrangebyscore(k.unclaimed, "-inf", f"({published_before_ms}", start=0,
                               num=limit, withscores=True)  # fmt: skip
        entries = sorted(
            ((float(score), str(job_id)) for rows in pipe.execute() for job_id, score in rows)
        )[:limit]
        calls = []
        for shard, ids in self._by_shard(job_id for _, job_id in entries).items():
            k = self.layout.shard(shard)
            calls.append(("take_unclaimed", [k.unclaimed, *(k.job(i) for i in ids)],
                          [published_before_ms, *ids]))  # fmt: skip
        jobs = []
        for reply in self._pipelined(calls):
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
        k = self.fleet
        reply = self._run("nodes", [k.nodes, k.last_death, k.node_capacity, k.node_fields],
                          [node, "beat", dead_after_ms, capacity or "", FIELDS_READ])  # fmt: skip
        return int(reply[0]), [str(n) for n in reply[1:]]

    def nodes_reading_long_names_only(self) -> list[str]:
        """The live nodes whose release cannot read short field names: they never
        said which names they read (releases before ``DURABLE_RECORD_FIELDS``)."""
        k = self.fleet
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrange(k.nodes, 0, -1)
        pipe.hgetall(k.node_fields)
        live, said = pipe.execute()
        return sorted(str(node) for node in live
                      if "short" not in str(said.get(node, "")).split(","))  # fmt: skip

    def lost_messages(self) -> int:
        """This worker's broker connection was re-made: the countdown messages it
        held are gone until the visibility timeout. Counted as a worker death
        (from now); returns Redis' now (ms)."""
        return int(self._run("lost_messages", [self.fleet.last_death], []))

    def pull_held(
        self, died_ms: int, within_ms: int, limit: int = 1000,
        shards: Sequence[int] | None = None,
    ) -> int:  # fmt: skip
        """After a death noticed at ``died_ms``: bring forward the due entries of
        retries a broker message held since before then, to their due time.

        Held entries sit at most ``within_ms`` after ``died_ms`` (the longest
        countdown plus the grace and the safety margin); the scan reads that
        window in pages of ``limit``. Returns how many entries moved.
        """
        # Read the window first, then pull: a pulled entry moves inside it, which
        # would shift the pages of a scan that pulled as it went.
        window: list[tuple[Keys, str]] = []
        for k in self._keys_of(shards):
            taken = 0
            while True:
                page = self.redis.zrangebyscore(
                    k.due, f"({died_ms}", died_ms + within_ms, start=taken, num=limit
                )
                taken += len(page)
                window += [(k, str(i)) for i in page]
                if len(page) < limit:
                    break
        moved = 0
        for at in range(0, len(window), limit):
            calls = [("pull_held", [k.job(job_id), k.due], [job_id, died_ms])
                     for k, job_id in window[at : at + limit]]  # fmt: skip
            moved += sum(int(n) for n in self._pipelined(calls))
        return moved

    def leave(self, node: str) -> None:
        """A clean shutdown: ``node`` is gone, and that is no death."""
        k = self.fleet
        self._run("nodes", [k.nodes, k.last_death, k.node_capacity, k.node_fields],
                  [node, "leave", 0, "", ""])  # fmt: skip

    def fleet_capacity(self, dead: Sequence[str], unknown: int) -> int:
        """Messages the whole fleet (live nodes and ``dead``) may hold unstarted; then
        forget the dead nodes' entries. A node that never said counts ``unknown``."""
        k = self.fleet
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

        Drops the hold and brings its due entry back from the safety time to the
        due time (XX: only an entry still there; LT: only ever earlier). Not one
        script: at worst it releases a later hold of the same job, which costs
        one extra message that claim drops.
        """
        k = self.layout.of(job_id)
        due = self.field(job_id, "next_attempt_at")
        pipe = self.redis.pipeline(transaction=False)
        pipe.hdel(k.job(job_id), "held", short_field_name("held"))  # whichever it holds
        if due is not None:
            pipe.zadd(k.due, {job_id: int(due)}, xx=True, lt=True)
        pipe.execute()

    def expired_leases(
        self, limit: int, shards: Sequence[int] | None = None
    ) -> tuple[int, list[str]]:
        """Up to ``limit`` expired leases of each of ``shards`` (default: every shard)."""
        chosen = self.shard_numbers() if shards is None else shards
        replies = self._pipelined(
            [("expired", [self.layout.shard(n).leases], [limit]) for n in chosen]
        )
        return (int(replies[0][0]) if replies else 0), [
            str(i) for reply in replies for i in reply[1:]
        ]

    def take_lease(self, job_id: str, owner: str, lease_ms: int) -> Claimed | None:
        k = self.layout.of(job_id)
        reply = self._run("take_lease", [k.job(job_id), k.leases], [job_id, owner, lease_ms])
        if reply[0] != "ok":
            return None
        return Claimed(now_ms=int(reply[1]), fields=_pairs(reply[2:]))

    def trim_ended(self) -> int:
        """Drop index entries of records that have expired; returns how many."""
        now_ms = self.now_ms()
        pipe = self.redis.pipeline(transaction=False)
        for k in self.layout.all:
            for state in ENDED_STATES:
                pipe.zremrangebyscore(k.ended(state), "-inf", now_ms)
        return sum(int(n) for n in pipe.execute()) + self._trim_stuck()

    def _trim_stuck(self, limit: int = 1000) -> int:
        # Stuck jobs leave the index in the scripts that end their streak; this
        # only catches entries whose record vanished some other way.
        pipe = self.redis.pipeline(transaction=False)
        for k in self.layout.all:
            pipe.zrange(k.stuck, 0, self.per_shard_limit(limit) - 1)
        ids = [str(i) for rows in pipe.execute() for i in rows]
        if not ids:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.exists(self.layout.of(job_id).job(job_id))
        gone = [job_id for job_id, found in zip(ids, pipe.execute(), strict=True) if not found]
        if not gone:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for shard, ids in self._by_shard(gone).items():
            pipe.zrem(self.layout.shard(shard).stuck, *ids)
        return sum(int(n) for n in pipe.execute())

    def add_stats(self, counts: dict[str, int]) -> None:
        """Add to the metrics counters (``recoveries:<kind>``...), in one round trip.

        With several shards they go to shard 0's counters (``stats`` sums them all).
        """
        pipe = self.redis.pipeline(transaction=False)
        for name, n in counts.items():
            if n:
                pipe.hincrby(self.keys.stats, name, n)
        if len(pipe):
            pipe.execute()

    # -- operators ------------------------------------------------------------

    def kill(self, job_id: str, reason: str, retention_ms: int, record_unknown: bool) -> list[str]:
        k = self.layout.of(job_id)
        reply = self._run(
            "kill",
            [
                k.job(job_id), k.due, k.leases, k.retrying, k.parked,
                k.ended(JobState.KILLED), k.stuck, k.unclaimed, k.history(job_id), k.deferred,
            ],
            [job_id, reason, retention_ms, "1" if record_unknown else "0"],
        )  # fmt: skip
        return [str(part) for part in reply]

    def resume(
        self, job_id: str, max_retrying: int | None, new_streak: bool, policy: str | None = None
    ) -> list[str]:
        """``max_retrying``: the cap the job's policy has (None: no cap), counted over
        every shard as in :meth:`fail`."""
        k = self.layout.of(job_id)
        elsewhere = self._waiting_elsewhere(job_id, policy) if max_retrying is not None else 0
        reply = self._run(
            "resume",
            [
                k.job(job_id), k.due, k.retrying, k.parked, k.ended(JobState.DEAD), k.stuck,
                k.history(job_id),
            ],
            [job_id, -1 if max_retrying is None else max_retrying, "1" if new_streak else "0",
             elsewhere],
        )
        return [str(part) for part in reply]

    def mark_stuck(self, job_id: str, alert_after_ms: int) -> tuple[int, int] | None:
        """Flag a failing job as stuck, once per streak, if it has failed for ``alert_after_ms``.

        Returns (first_failure_at ms, now ms) the first time, else None.
        """
        k = self.layout.of(job_id)
        reply = self._run("stuck", [k.job(job_id), k.stuck], [job_id, alert_after_ms])
        if reply[0] != "alerted":
            return None
        return int(reply[1]), int(reply[2])

    def purge(self, ids: Sequence[str], state: JobState, cutoff_ms: int) -> tuple[int, int]:
        """Delete ended records of ``state`` last updated at or before ``cutoff_ms``.

        Returns (records deleted, index entries removed).
        """
        calls = []
        for job_id in ids:
            k = self.layout.of(job_id)
            calls.append(("purge", [k.job(job_id), k.ended(state), k.stuck, k.history(job_id)],
                          [job_id, state.value, cutoff_ms]))  # fmt: skip
        pipe = self.redis.pipeline(transaction=False)
        for name, keys, args in calls:  # always pipelined, even for one id
            self._run(name, keys, args, client=pipe)
        replies = [int(n) for n in pipe.execute()]
        return replies.count(1), replies.count(1) + replies.count(2)

    # A pause is read inside claim and dispatched, next to the job's keys: each
    # shard has its own copy of the pauses hash, written to every shard (one
    # round trip per node); a write that failed half-way is completed by
    # running the command again (HSETNX/HDEL are idempotent).

    def pause(self, target: str, entry_json: str) -> bool:
        """Pause ``policy:<P>`` or ``task:<T>``; False if it was paused already (kept)."""
        pipe = self.redis.pipeline(transaction=False)
        for k in self.layout.all:
            pipe.hsetnx(k.pauses, target, entry_json)
        return any(pipe.execute())

    def pauses(self) -> dict[str, str]:
        pipe = self.redis.pipeline(transaction=False)
        for k in reversed(self.layout.all):  # shard 0's entry wins
            pipe.hgetall(k.pauses)
        found: dict[str, str] = {}
        for entries in pipe.execute():
            found.update(entries)
        return found

    def end_pause(self, target: str) -> bool:
        """Stop deferring new deliveries of ``target``; its deferred jobs wait for release."""
        pipe = self.redis.pipeline(transaction=False)
        for k in self.layout.all:
            pipe.hdel(k.pauses, target)
        return any(pipe.execute())

    def deferred_ids(self) -> list[str]:
        pipe = self.redis.pipeline(transaction=False)
        for k in self.layout.all:
            pipe.zrange(k.deferred, 0, -1)
        return [str(i) for rows in pipe.execute() for i in rows]

    def release(
        self, ids: Sequence[str], jitters: Sequence[float], start_ms: int, interval_ms: float,
        slot: int,
    ) -> tuple[int, int]:  # fmt: skip
        """Release those of ``ids`` no pause holds any more, one per ``interval_ms`` from
        ``start_ms`` (slots counted from ``slot``); returns (released, slots used)."""
        jitter_of = dict(zip(ids, jitters, strict=True))
        released = 0
        for shard, group in self._by_shard(ids).items():  # slots run on across shards
            k = self.layout.shard(shard)
            args: list[Any] = [start_ms, interval_ms, slot]
            for job_id in group:
                args += [job_id, jitter_of[job_id]]
            reply = self._run(
                "release", [k.pauses, k.deferred, k.due, *(k.job(i) for i in group)], args
            )
            released, slot = released + int(reply[0]), int(reply[1])
        return released, slot

    def retry_now(self, job_id: str) -> list[str]:
        k = self.layout.of(job_id)
        reply = self._run("retry_now", [k.job(job_id), k.due], [job_id])
        return [str(part) for part in reply]

    # -- reads ------------------------------------------------------------------

    def now_ms(self) -> int:
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def get(self, job_id: str) -> dict[str, str] | None:
        """The job's record, every field under its long name (None: no record)."""
        fields = cast(dict[str, str], self.redis.hgetall(self.layout.of(job_id).job(job_id)))
        return long_field_names(fields) or None

    def field(self, job_id: str, name: str) -> str | None:
        """One field of the job's record (``name`` long), whichever names it holds."""
        return self.fields_of([job_id], [name])[0][0]

    def history(self, job_id: str) -> list[str]:
        """The job's last attempts, oldest first: JSON entries (none for records
        made before history existed, or with ``DURABLE_HISTORY_ATTEMPTS=0``)."""
        key = self.layout.of(job_id).history(job_id)
        return [str(entry) for entry in self.redis.lrange(key, 0, -1)]

    def get_many(self, ids: Sequence[str]) -> list[dict[str, str] | None]:
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self.layout.of(job_id).job(job_id))
        return [long_field_names(fields) or None for fields in pipe.execute()]

    def index_keys(self, state: JobState) -> tuple[str, ...]:
        """The indexes that list jobs of ``state``: queued jobs are in the due set
        (a retry published, or a first attempt with a countdown) or unclaimed."""
        if state is JobState.QUEUED:
            return (self.keys.unclaimed, self.keys.due)
        return (self.index_key(state),)

    def exists(self, job_id: str) -> bool:
        return bool(self.redis.exists(self.layout.of(job_id).job(job_id)))

    def ids_with_prefix(self, prefix: str, limit: int, count: int = 5000) -> list[str]:
        """Up to ``limit`` indexed job ids that start with ``prefix``: ZSCAN of each index.

        Every record is in an index (unclaimed, due, leases, parked, ended:<state>), so
        no key scan is needed. ``prefix`` must hold no glob character (job ids
        never do: see ``validate_job_id``). Cost: the indexes' size / ``count``
        round trips, fewer when ``limit`` is reached early.
        """
        found: dict[str, None] = {}
        indexes = [
            key for k in self.layout.all
            for key in (k.unclaimed, k.due, k.leases, k.parked, *(k.ended(s) for s in ENDED_STATES))
        ]  # fmt: skip
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

    # Index reads take an index by its name in shard 0 (``store.keys.due``, or
    # ``index_key(state)``) and read it in every shard: sizes and counts are
    # summed, ids merged by score.

    def _each_key(self, keys: Sequence[str], command: str, *args: Any) -> list[Any]:
        """``command key *args`` for each key, in one pipeline (a round trip per node)."""
        if len(keys) == 1:
            return [self.redis.execute_command(command, keys[0], *args)]
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command(command, key, *args)
        return list(pipe.execute())

    def _each_answering_key(
        self, keys: Sequence[str], unread: set[int], command: str, *args: Any
    ) -> tuple[list[str], list[Any]]:
        """As :meth:`_each_key` for ``keys`` (one per shard, in shard order), leaving out
        the keys whose node does not answer (their shard numbers go into ``unread``):
        the keys that answered, and their replies."""
        try:
            return list(keys), self._each_key(keys, command, *args)
        except NODE_UNREACHABLE:
            pass  # one node is down: ask each shard on its own, to keep the others
        answered: list[str] = []
        replies: list[Any] = []
        for shard, key in enumerate(keys):
            try:
                replies.append(self.redis.execute_command(command, key, *args))
            except NODE_UNREACHABLE:
                unread.add(shard)
                continue
            answered.append(key)
        return answered, replies

    def index_page(self, key: str, offset: int, count: int) -> list[str]:
        """Ids ``offset`` to ``offset + count`` of this one key (one shard's index)."""
        return [str(i) for i in self.redis.zrange(key, offset, offset + count - 1)]

    def index_ids(self, key: str, offset: int, count: int) -> list[str]:
        """Ids ``offset`` to ``offset + count`` of the index, by score over every shard."""
        if not self.layout.sharded:
            return self.index_page(key, offset, count)
        rows = self._each_key(self.layout.across(key), "ZRANGE", 0, offset + count - 1,
                              "WITHSCORES")  # fmt: skip
        merged = heapq.merge(*(_scored(row) for row in rows))
        return [job_id for _, job_id in itertools.islice(merged, offset, offset + count)]

    def iter_index(
        self, key: str, chunk: int, unread: set[int] | None = None
    ) -> Iterator[list[str]]:
        """The index's ids in score order, ``chunk`` at a time (over every shard:
        each shard is read a page at a time and the pages merged).

        ``unread``: on a sharded layout, a shard whose node does not answer is left
        out and its number added here (without it, the error is raised).
        """
        if not self.layout.sharded:
            offset = 0
            while ids := self.index_ids(key, offset, chunk):
                offset += len(ids)
                yield ids
            return
        keys = self.layout.across(key)
        page = max(1, min(chunk, -(-chunk * 2 // len(keys))))
        if unread is None:
            firsts = self._each_key(keys, "ZRANGE", 0, page - 1, "WITHSCORES")
        else:
            keys, firsts = self._each_answering_key(keys, unread, "ZRANGE", 0, page - 1,
                                                    "WITHSCORES")  # fmt: skip
        merged = heapq.merge(*(self._pages(k, page, _scored(first))
                               for k, first in zip(keys, firsts, strict=True)))  # fmt: skip
        while batch := [job_id for _, job_id in itertools.islice(merged, chunk)]:
            yield batch

    def _pages(self, key: str, page: int, first: list[tuple[float, str]]) -> Iterator[
        tuple[float, str]
    ]:  # fmt: skip
        offset, rows = 0, first
        while rows:
            yield from rows
            if len(rows) < page:
                return
            offset += page
            rows = _scored(self.redis.zrange(key, offset, offset + page - 1, withscores=True))

    def index_size(self, key: str) -> int:
        return sum(int(n) for n in self._each_key(self.layout.across(key), "ZCARD"))

    def retrying_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for shard in self._each_key([k.retrying for k in self.layout.all], "HGETALL"):
            for policy, n in _pairs(shard).items() if isinstance(shard, list) else shard.items():
                counts[str(policy)] = counts.get(str(policy), 0) + int(n)
        return counts

    def parked_ids(self, count: int, shards: Sequence[int] | None = None) -> list[str]:
        """The oldest ``count`` parked ids of each of ``shards`` (default: every shard)."""
        chosen = self.shard_numbers() if shards is None else shards
        keys = [self.layout.shard(n).parked for n in chosen]
        return [str(i) for rows in self._each_key(keys, "ZRANGE", 0, count - 1) for i in rows]

    def index_score(self, key: str, job_id: str) -> float | None:
        score = self.redis.zscore(self.layout.in_shard(key, self.layout.shard_of(job_id)), job_id)
        return None if score is None else float(score)

    def in_index(self, key: str, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` that the index holds (one ZMSCORE per shard)."""
        found: set[str] = set()
        for shard, group in self._by_shard(ids).items():
            scores = self.redis.zmscore(self.layout.in_shard(key, shard), group)
            found |= {i for i, score in zip(group, scores, strict=True) if score is not None}
        return found

    def expires_at_ms(self, job_id: str) -> int | None:
        """When the job's record expires (ended records), or None."""
        # PTTL and TIME rather than PEXPIRETIME, which Redis 6.2 lacks.
        key = self.layout.of(job_id).job(job_id)
        if self.cluster:  # no TIME in a cluster pipeline: the key's own node answers both
            now, ttl_ms = self.redis.eval(_TIME_AND_PTTL, 1, key)
            return int(now) + int(ttl_ms) if ttl_ms > 0 else None
        pipe = self.redis.pipeline(transaction=True)
        pipe.time()
        pipe.pttl(key)
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
        keys = [key for name in names.values() for key in self.layout.across(name)]
        counts = iter(self._each_key(keys, "ZCARD"))
        shards = self.layout.shards
        return {name: sum(int(next(counts)) for _ in range(shards)) for name in names}

    def sweeper_health(self, live_within_ms: int) -> tuple[int, int | None]:
        """(sweepers that beat within ``live_within_ms``, ms the oldest due entry is
        overdue or None): one round trip, whatever the number of jobs.

        Sweepers push every entry they take forward (take_due), so an entry
        behind now means no sweeper has reached it yet.
        """
        pipe = self.redis.pipeline(transaction=not self.cluster)
        if not self.cluster:  # a cluster pipeline takes no TIME: asked first, on its own
            pipe.time()
        pipe.zrange(self.fleet.nodes, 0, -1, withscores=True)
        for k in self.layout.all:
            pipe.zrange(k.due, 0, 0, withscores=True)
        now = self.now_ms() if self.cluster else 0
        replies = pipe.execute()
        if not self.cluster:
            seconds, micros = replies.pop(0)
            now = int(seconds) * 1000 + int(micros) // 1000
        nodes, *firsts = replies
        oldest = sorted((row for first in firsts for row in first), key=lambda row: row[1])[:1]
        live = sum(1 for _node, beat in nodes if beat >= now - live_within_ms)
        overdue = now - int(oldest[0][1]) if oldest and oldest[0][1] < now else None
        return live, overdue

    def stats(self) -> dict[str, int]:
        """The metrics counters, summed over every shard's copy."""
        counts: dict[str, int] = {}
        for shard in self._each_key([k.stats for k in self.layout.all], "HGETALL"):
            for name, n in _pairs(shard).items() if isinstance(shard, list) else shard.items():
                counts[str(name)] = counts.get(str(name), 0) + int(n)
        return counts

    # -- the registry of the policies workers serve ------------------------------

    def write_policies(self, entries: dict[str, str]) -> int:
        """Set each policy name's entry (overwriting it); returns how many names are kept."""
        pipe = self.redis.pipeline(transaction=False)
        if entries:
            mapping: dict[Any, Any] = dict(entries)
            pipe.hset(self.fleet.policies, mapping=mapping)
        pipe.hlen(self.fleet.policies)
        return int(pipe.execute()[-1])

    def policy_entry(self, name: str) -> str | None:
        entry = self.redis.hget(self.fleet.policies, name)
        return None if entry is None else str(entry)

    def policy_entries(self) -> dict[str, str]:
        return cast(dict[str, str], self.redis.hgetall(self.fleet.policies))

    def drop_policies(self, names: Sequence[str]) -> None:
        if names:
            self.redis.hdel(self.fleet.policies, *names)

    def sample_ids(self, key: str, count: int) -> list[str]:
        """All of an index's ids if it holds at most ``count``, else a random ``count`` of them."""
        if self.index_size(key) <= count:
            return self.index_ids(key, 0, count)
        share = self.per_shard_limit(count)
        return [str(i) for ids in self._each_key(self.layout.across(key), "ZRANDMEMBER", share)
                for i in ids]  # fmt: skip

    def fields_of(self, ids: Sequence[str], names: Sequence[str]) -> list[list[str | None]]:
        """Some fields (long names) of many jobs, in one pipelined round trip. Each
        name is asked for under both of its names: a record holds one of them."""
        asked = [*names, *(short_field_name(name) for name in names)]
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self.layout.of(job_id).job(job_id), asked)
        n = len(names)
        return [[long if long is not None else short
                 for long, short in zip(row[:n], row[n:], strict=True)]
                for row in pipe.execute()]  # fmt: skip
