"""Every Redis key name the layer writes, derived from one prefix and a shard.

The store is the only user of these names: scripts get every key in KEYS
(none is built inside a script). With one shard (the default for a single
Redis and Sentinel) every name is the layer's original one (``durable:due``,
``durable:job:<id>``). With ``DURABLE_REDIS_SHARDS=N > 1`` each job belongs to
shard ``crc32(id) % N``, and every key a script touches for it carries that
shard's hash tag (``durable:{07}:job:<id>``, ``durable:{07}:due``), so a Redis
Cluster runs each transition on one node; the keys of the whole fleet (nodes,
their capacity, the last death, the policy registry) carry the ``{fleet}`` tag.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cached_property

from workers.core.records import JobState


@dataclass(frozen=True)
class Keys:
    """Every Redis key name of one shard (or of the fleet), derived from one prefix.

    ``tag`` is the hash tag (``{07}``, ``{fleet}``) or "" for the unsharded
    layout, whose names are the original ones.
    """

    prefix: str
    tag: str = ""

    @cached_property
    def base(self) -> str:
        return f"{self.prefix}:{self.tag}" if self.tag else self.prefix

    def job(self, job_id: str) -> str:
        return f"{self.base}:job:{job_id}"

    def history(self, job_id: str) -> str:
        """List: the job's last attempts (JSON entries, oldest first); expires with the job."""
        return f"{self.base}:history:{job_id}"

    @property
    def due(self) -> str:
        """Waiting retries, scored by when a sweeper should publish them."""
        return f"{self.base}:due"

    @property
    def leases(self) -> str:
        """Running attempts, scored by when their lease ends."""
        return f"{self.base}:leases"

    @property
    def retrying(self) -> str:
        """Hash: policy -> jobs waiting for a retry (for ``max_retrying``)."""
        return f"{self.base}:retrying"

    @property
    def parked(self) -> str:
        """Jobs parked by ``max_retrying``, scored by when they were parked."""
        return f"{self.base}:parked"

    @property
    def nodes(self) -> str:
        """Live workers (their sweepers), scored by last heartbeat."""
        return f"{self.base}:nodes"

    @property
    def unclaimed(self) -> str:
        """First attempts enqueued and not claimed yet, scored by when published."""
        return f"{self.base}:unclaimed"

    @property
    def node_fields(self) -> str:
        """Hash: node -> the record field names its release reads (``long,short``)."""
        return f"{self.base}:node_fields"

    @property
    def node_capacity(self) -> str:
        """Hash: node -> messages its worker may hold unstarted (prefetch)."""
        return f"{self.base}:node_capacity"

    @property
    def last_death(self) -> str:
        """When a sweeper last found a worker dead (ms, Redis clock)."""
        return f"{self.base}:last_death"

    @property
    def pauses(self) -> str:
        """Hash: ``policy:<P>`` | ``task:<T>`` -> the pause (JSON: reason, since)."""
        return f"{self.base}:pauses"

    @property
    def deferred(self) -> str:
        """Waiting jobs a pause holds back, scored by when they were deferred."""
        return f"{self.base}:deferred"

    @property
    def stuck(self) -> str:
        """Jobs reported stuck in their current streak, scored by when."""
        return f"{self.base}:stuck"

    @property
    def stats(self) -> str:
        """Hash of counters for metrics: ``failures:<event>``, ``recoveries:<kind>``."""
        return f"{self.base}:stats"

    @property
    def policies(self) -> str:
        """Hash: policy name -> the policy workers serve under it (JSON), written at start."""
        return f"{self.base}:policies"

    def ended(self, state: JobState) -> str:
        """Finished jobs of one state, scored by when their record expires."""
        return f"{self.base}:ended:{state.value}"

    def budget(self, name: str) -> str:
        """String: when the next slot of retry budget ``name`` (a policy, or
        ``<policy>:<event>``) is free, ms; its own key, expires when idle."""
        return f"{self.prefix}:budget:{name}"

    def job_pattern(self) -> str:
        return f"{self.prefix}:*"


def shard_tag(shard: int) -> str:
    return f"{{{shard:02d}}}"


@dataclass(frozen=True)
class Layout:
    """Where each job's keys live: ``shards`` fixed sets of indexes, one hash slot each.

    A job's shard is ``crc32(job id) % shards``: stable, so every process agrees
    without asking Redis. The shard count is part of the data's layout: changing
    it on a store that holds jobs strands them (no migration command exists).
    """

    prefix: str
    shards: int = 1

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError(f"shards must be at least 1, not {self.shards}")

    @property
    def sharded(self) -> bool:
        return self.shards > 1

    def shard_of(self, job_id: str) -> int:
        return zlib.crc32(job_id.encode()) % self.shards if self.shards > 1 else 0

    def shard(self, shard: int) -> Keys:
        return self._shards[shard]

    def of(self, job_id: str) -> Keys:
        """The keys of the shard ``job_id`` belongs to."""
        return self._shards[self.shard_of(job_id)]

    @cached_property
    def _shards(self) -> tuple[Keys, ...]:
        if self.shards == 1:
            return (Keys(self.prefix),)
        return tuple(Keys(self.prefix, shard_tag(n)) for n in range(self.shards))

    @property
    def all(self) -> tuple[Keys, ...]:
        return self._shards

    @cached_property
    def fleet(self) -> Keys:
        """Keys of the whole fleet: nodes, node_capacity, last_death, policies."""
        return Keys(self.prefix, "{fleet}") if self.shards > 1 else Keys(self.prefix)

    def across(self, key: str) -> list[str]:
        """The same index in every shard, given its name in shard 0 (``keys.due``)."""
        if self.shards == 1:
            return [key]
        base = self._shards[0].base
        if not key.startswith(base + ":"):
            raise ValueError(f"{key!r} is not a key of shard 0 ({base}:...)")
        suffix = key[len(base) :]
        return [keys.base + suffix for keys in self._shards]

    def in_shard(self, key: str, shard: int) -> str:
        """The index named ``key`` in shard 0, in ``shard``."""
        return key if self.shards == 1 else self.across(key)[shard]
