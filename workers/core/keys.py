"""Every Redis key name the layer writes, derived from one prefix.

The store is the only user of these names: scripts get every key in KEYS
(none is built inside a script), so a Redis Cluster deployment only needs
hash tags added here.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.core.records import JobState


@dataclass(frozen=True)
class Keys:
    """Every Redis key name, derived from one prefix."""

    prefix: str

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def history(self, job_id: str) -> str:
        """List: the job's last attempts (JSON entries, oldest first); expires with the job."""
        return f"{self.prefix}:history:{job_id}"

    @property
    def due(self) -> str:
        """Waiting retries, scored by when a sweeper should publish them."""
        return f"{self.prefix}:due"

    @property
    def leases(self) -> str:
        """Running attempts, scored by when their lease ends."""
        return f"{self.prefix}:leases"

    @property
    def retrying(self) -> str:
        """Hash: policy -> jobs waiting for a retry (for ``max_retrying``)."""
        return f"{self.prefix}:retrying"

    @property
    def parked(self) -> str:
        """Jobs parked by ``max_retrying``, scored by when they were parked."""
        return f"{self.prefix}:parked"

    @property
    def nodes(self) -> str:
        """Live workers (their sweepers), scored by last heartbeat."""
        return f"{self.prefix}:nodes"

    @property
    def unclaimed(self) -> str:
        """First attempts enqueued and not claimed yet, scored by when published."""
        return f"{self.prefix}:unclaimed"

    @property
    def node_capacity(self) -> str:
        """Hash: node -> messages its worker may hold unstarted (prefetch)."""
        return f"{self.prefix}:node_capacity"

    @property
    def last_death(self) -> str:
        """When a sweeper last found a worker dead (ms, Redis clock)."""
        return f"{self.prefix}:last_death"

    @property
    def pauses(self) -> str:
        """Hash: ``policy:<P>`` | ``task:<T>`` -> the pause (JSON: reason, since)."""
        return f"{self.prefix}:pauses"

    @property
    def deferred(self) -> str:
        """Waiting jobs a pause holds back, scored by when they were deferred."""
        return f"{self.prefix}:deferred"

    @property
    def stuck(self) -> str:
        """Jobs reported stuck in their current streak, scored by when."""
        return f"{self.prefix}:stuck"

    @property
    def stats(self) -> str:
        """Hash of counters for metrics: ``failures:<event>``, ``recoveries:<kind>``."""
        return f"{self.prefix}:stats"

    @property
    def policies(self) -> str:
        """Hash: policy name -> the policy workers serve under it (JSON), written at start."""
        return f"{self.prefix}:policies"

    def ended(self, state: JobState) -> str:
        """Finished jobs of one state, scored by when their record expires."""
        return f"{self.prefix}:ended:{state.value}"

    def budget(self, name: str) -> str:
        """String: when the next slot of retry budget ``name`` (a policy, or
        ``<policy>:<event>``) is free, ms; its own key, expires when idle."""
        return f"{self.prefix}:budget:{name}"

    def job_pattern(self) -> str:
        return f"{self.prefix}:*"
