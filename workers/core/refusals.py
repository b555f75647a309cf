"""A Redis that answers but refuses writes: out of memory, read-only, MISCONF, NOREPLICAS...

A refusal is not a job failure. Redis keeps every job's state as it was (a
refused script writes nothing, see below), so the layer waits and tries
again, exactly as for an unreachable Redis, and tells the operator once per
streak what is wrong and how to fix it.

- :func:`refusal_reason` names the refusal of a redis-py exception, or None.
- :func:`describe` is the one-line operator message, with the figures Redis
  gives (``INFO``, ``CONFIG GET``) read best-effort: reads still work while
  writes are refused.
- :class:`Refusals` (one per :class:`~workers.core.runtime.Runtime`) counts
  refused calls by reason and logs one WARNING (and POSTs one alert) when a
  streak starts, one INFO line when Redis accepts writes again.

Counting without writing: while Redis refuses writes no counter can go into
it, so each process counts in memory and adds its counts to ``durable:stats``
(``refusals:<reason>``) when its streak ends. The metrics endpoint of a worker
shows the stored counts plus its own not yet stored ones, so the counter grows
during the streak (the worker's sweeper is refused on every pass) and holds
every process's refusals once it ends.

What Redis does with a refused script (checked on Redis 7.0 and 6.2): a script
without flags, as ours are, starts, and its first write is refused: READONLY,
MISCONF and NOREPLICAS refuse every write, and the conditions cannot change
while a script runs (Redis is single-threaded), so the first write is the
refused one; OOM is checked only before a script's first write (a later one
is let through so the script is never cut in half). So a refused script has
made no write; nothing partial is left. Redis 7 answers with the code
(``OOM ...``, ``NOREPLICAS ... script: <sha>``); 6.2 wraps it
(``ERR Error running script ...: -OOM ...``): both are recognised.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from typing import Any

import redis

from workers.core.settings import redact_url
from workers.core.texts import iso

log = logging.getLogger("workers.redis")

# Redis error code -> the reason we say and count.
REASONS = {
    "OOM": "out-of-memory",
    "READONLY": "read-only",
    "MISCONF": "misconf",
    "NOREPLICAS": "no-replicas",
    "BUSY": "busy",
    "LOADING": "loading",
    "CLUSTERDOWN": "cluster-down",
    "TRYAGAIN": "try-again",
    "MASTERDOWN": "master-down",
}
# The code opens the message (Redis 7, and any plain command), or follows
# ": -" inside a 6.2 "Error running script" answer. BUSYKEY/BUSYGROUP are not BUSY.
_CODE = re.compile(r"(?:^|: -)(" + "|".join(REASONS) + r")\b")
# redis-py classes that stand for a code and drop it from the message.
_CLASSES: tuple[tuple[type[BaseException], str], ...] = (
    (redis.exceptions.OutOfMemoryError, "out-of-memory"),
    (redis.exceptions.ReadOnlyError, "read-only"),
    (redis.exceptions.BusyLoadingError, "loading"),
    (redis.exceptions.TryAgainError, "try-again"),
    (redis.exceptions.MasterDownError, "master-down"),
    (redis.exceptions.ClusterDownError, "cluster-down"),
)

HELD = "jobs are held, none is lost"
_PERSISTENCE = {
    "rdb_last_bgsave_status": "the last RDB save failed",
    "aof_last_write_status": "AOF writes fail",
    "aof_last_bgrewrite_status": "the last AOF rewrite failed",
}


def refusal_reason(exc: BaseException) -> str | None:
    """The refusal ``exc`` is ("out-of-memory", "read-only", ...), or None if it is none.

    A refusal is Redis answering, but not doing the write now; waiting and
    trying again is right. Connection errors and timeouts are not refusals
    (Redis did not answer), except LOADING, which redis-py makes a ConnectionError.
    """
    if not isinstance(exc, redis.RedisError):
        return None
    for cls, reason in _CLASSES:
        if isinstance(exc, cls):
            return reason
    if not isinstance(exc, redis.ResponseError):
        return None
    code = getattr(exc, "status_code", None)
    if code in REASONS:
        return REASONS[code]
    found = _CODE.search(str(exc))
    return REASONS[found.group(1)] if found else None


def _bytes(value: Any) -> str:
    """Bytes as Redis' own INFO shows them (3.00M), from a number."""
    n = float(value)
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.2f}{unit}"
        n /= 1024
    return str(value)  # pragma: no cover


def memory_use(client: redis.Redis) -> dict[str, Any]:
    """``used``, ``maxmemory`` (bytes; 0 = no limit) and ``policy``, from INFO memory
    (on a Redis Cluster: summed over the masters, the policy of the fullest one)."""
    if isinstance(client, redis.RedisCluster):
        per_node = client.info("memory", target_nodes=redis.RedisCluster.PRIMARIES)
        infos = list(per_node.values()) if isinstance(per_node, dict) else [per_node]
        if infos and isinstance(infos[0], dict):
            fullest = max(infos, key=lambda info: int(info.get("used_memory", 0)))
            return {
                "used": sum(int(info.get("used_memory", 0)) for info in infos),
                "maxmemory": sum(int(info.get("maxmemory", 0)) for info in infos),
                "policy": str(fullest.get("maxmemory_policy", "")),
            }
    info = client.info("memory")
    return {
        "used": int(info.get("used_memory", 0)),
        "maxmemory": int(info.get("maxmemory", 0)),
        "policy": str(info.get("maxmemory_policy", "")),
    }


def memory_text(memory: dict[str, Any]) -> str:
    """``memory 1.20M of 3.00M (40%)``, or ``memory 1.20M (no maxmemory)``: how near full."""
    used, limit = memory["used"], memory["maxmemory"]
    if not limit:
        return f"memory {_bytes(used)} (no maxmemory)"
    return f"memory {_bytes(used)} of {_bytes(limit)} ({100 * used / limit:.0f}%)"


def _config(client: redis.Redis, pattern: str) -> dict[str, str]:
    # CONFIG is often renamed or denied on managed Redis: the caller says less then.
    return {str(k): str(v) for k, v in client.config_get(pattern).items()}


def _facts(client: redis.Redis, reason: str) -> str:
    if reason == "out-of-memory":
        m = memory_use(client)
        return (f"out of memory (maxmemory {_bytes(m['maxmemory'])}, policy {m['policy']}, "
                f"used {_bytes(m['used'])})")  # fmt: skip
    if reason == "read-only":
        info = client.info("replication")
        master = f"{info.get('master_host')}:{info.get('master_port')}"
        return f"it is a read-only replica (of {master})"
    if reason == "misconf":
        info = client.info("persistence")
        failed = [said for name, said in _PERSISTENCE.items() if info.get(name) == "err"]
        where = _config(client, "dir").get("dir") or "unreadable: removed?"
        return f"it cannot persist to disk ({', '.join(failed) or 'MISCONF'}; dir {where})"
    if reason == "no-replicas":
        config = _config(client, "min-replicas-*")
        connected = client.info("replication").get("connected_slaves", 0)
        if config.get("min-replicas-to-write") == "0":
            # The server itself does not refuse: the layer's own WAIT did
            # (DURABLE_REDIS_MIN_REPLICAS), so the server's setting is no lead.
            return (f"fewer replicas acknowledged the write than DURABLE_REDIS_MIN_REPLICAS "
                    f"asks ({connected} connected)")  # fmt: skip
        return (f"fewer replicas than min-replicas-to-write "
                f"({config.get('min-replicas-to-write', '?')} wanted, lag at most "
                f"{config.get('min-replicas-max-lag', '?')}s; {connected} connected)")  # fmt: skip
    raise LookupError(reason)


_PLAIN = {
    "out-of-memory": "out of memory",
    "read-only": "it is a read-only replica",
    "misconf": "it cannot persist to disk (MISCONF)",
    "no-replicas": "fewer replicas than min-replicas-to-write",
    "busy": "a script has been running too long (BUSY)",
    "loading": "it is loading its data set (LOADING)",
    "cluster-down": "the cluster is down (CLUSTERDOWN)",
    "try-again": "a slot is being moved (TRYAGAIN)",
    "master-down": "its link to the master is down (MASTERDOWN)",
}
_FIX = {
    "out-of-memory": "raise maxmemory or run `retryctl purge`",
    "read-only": "point DURABLE_REDIS_URL at the master (after a failover, the new one), "
    "or run REPLICAOF NO ONE if this one should be the master",
    "misconf": "fix the disk (space, permissions of dir) and run BGSAVE",
    "no-replicas": "bring a replica back, or lower min-replicas-to-write (the server's) "
    "or DURABLE_REDIS_MIN_REPLICAS (the layer's WAIT)",
    "busy": "wait, or end the script with SCRIPT KILL",
    "loading": "wait until it has loaded",
    "cluster-down": "bring the cluster's failed nodes back",
    "try-again": "wait until the resharding is done",
    "master-down": "bring the master back or point DURABLE_REDIS_URL at it",
}


def describe(client: redis.Redis | None, url: str, reason: str) -> str:
    """What is wrong and how to fix it, in one line; the password never shows.

    ``client`` is asked for figures (INFO, CONFIG GET) best-effort: without
    an answer the line says the same without them.
    """
    what = _PLAIN.get(reason, reason)
    if client is not None:
        with suppress(redis.RedisError, LookupError, ValueError, TypeError):
            what = _facts(client, reason)
    fix = _FIX.get(reason, "fix the condition Redis names")
    return f"Redis at {redact_url(url)} refuses writes: {what}; {HELD}; {fix}"


class Refusals:
    """Refused calls of one process, by reason; one WARNING per streak.

    A streak starts at the first refusal and ends at the next call Redis
    accepts (:meth:`accepted`). In a worker only its main process (the one
    with the sweeper, :meth:`speak_here`) logs the streak and sends the alert;
    its pool children count, wait and say nothing, so a worker says it once,
    whatever the number of jobs. A process with no sweeper speaks for itself.
    """

    def __init__(
        self,
        url: str,
        client: Callable[[], redis.Redis | None] = lambda: None,
        alert: Callable[[dict[str, Any]], Any] | None = None,
        store_counts: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        self.url = url
        self._client = client
        self._alert = alert
        self._store_counts = store_counts
        self._lock = threading.RLock()
        self.counts: dict[str, int] = {}  # every refusal this process saw
        self._unstored: dict[str, int] = {}  # not yet added to durable:stats
        self.reason: str | None = None  # of the streak under way
        self._since = 0.0
        self._in_streak = 0
        self._speaker: int | None = None

    def speak_here(self) -> None:
        """This process speaks for the worker: its forked pool children stay quiet."""
        self._speaker = os.getpid()

    @property
    def speaks(self) -> bool:
        return self._speaker is None or self._speaker == os.getpid()

    def note(self, exc: BaseException, reason: str) -> None:
        """Count a refusal; the first of a streak (or of a new reason) is told."""
        with self._lock:
            self.counts[reason] = self.counts.get(reason, 0) + 1
            self._unstored[reason] = self._unstored.get(reason, 0) + 1
            self._in_streak += 1
            if self.reason == reason:
                return
            self.reason, self._since, self._in_streak = reason, time.time(), 1
        message = describe(self._client(), self.url, reason)
        if not self.speaks:
            log.debug("durable-retry: %s (%s)", message, exc)
            return
        log.warning("durable-retry: %s", message)
        if self._alert is not None:
            self._alert({
                "event": "redis_refuses_writes", "reason": reason,
                "redis_url": redact_url(self.url), "since": iso(self._since),
                "message": message,
            })  # fmt: skip

    def accepted(self) -> None:
        """Redis accepted a call: end the streak (if any) and store its counts."""
        if self.reason is None and not self._unstored:
            return  # the common case: no lock, no round trip
        with self._lock:
            reason, since, refused = self.reason, self._since, self._in_streak
            self.reason, self._in_streak = None, 0
        if reason is not None and self.speaks:
            log.info(
                "durable-retry: Redis at %s accepts writes again (%s for %.0fs; %d calls "
                "refused here, each waited and was tried again)",
                redact_url(self.url), reason, time.time() - since, refused,
            )  # fmt: skip
        self.store_counts()

    def store_counts(self) -> None:
        """Add the counts not yet stored to ``durable:stats``; kept for later if refused."""
        if self._store_counts is None:
            return
        with self._lock:
            pending, self._unstored = self._unstored, {}
            if not pending:
                return
            try:
                self._store_counts({f"refusals:{r}": n for r, n in pending.items()})
            except redis.RedisError:
                for r, n in pending.items():
                    self._unstored[r] = self._unstored.get(r, 0) + n

    def unstored(self) -> dict[str, int]:
        """Counts not yet in ``durable:stats`` (what a metrics scrape adds to the stored ones)."""
        with self._lock:
            return dict(self._unstored)

    def locked(self) -> AbstractContextManager[Any]:
        """Held while reading stored + unstored counts, so a scrape never counts twice."""
        return self._lock
