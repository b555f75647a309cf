"""Keeps the leases of the attempts running in this process alive.

A running attempt holds a lease in Redis (``durable:leases``). One daemon
thread per process renews every held lease in one script call, every third
of the lease length, so a job that runs for hours keeps its lease while its
worker lives, and loses it within one lease length after the worker dies.

A renewal Redis refuses (out of memory, read-only...) or cannot answer is
tried again at the next pass, with every lease still held here: the renew
script extends a lease whose time ran out as long as its owner still holds
it, and sweepers leave expired leases alone for a lease length after a
refusal streak (``workers.core.sweeper``), so a live attempt keeps its lease.
Trouble is logged once per streak, not every pass.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict

import redis

from workers.core.refusals import Refusals, refusal_reason
from workers.core.store import Store

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews the leases of attempts running in this process."""

    def __init__(
        self, store: Store, lease_seconds: float, refusals: Refusals | None = None
    ) -> None:
        self._store = store
        self._refusals = refusals
        self._trouble: str | None = None  # "refused" or "unreachable" while it lasts
        self._lease_ms = int(lease_seconds * 1000)
        self._interval = lease_seconds / 3
        self._held: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def hold(self, job_id: str, attempt: int, owner: str) -> None:
        with self._lock:
            self._held[job_id] = (attempt, owner)
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                # A forked pool child inherits the object but not the thread.
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._renew_forever, name="durable-lease-keeper", daemon=True
                )
                self._thread.start()

    def release(self, job_id: str) -> None:
        with self._lock:
            self._held.pop(job_id, None)

    def held(self) -> dict[str, tuple[int, str]]:
        with self._lock:
            return dict(self._held)

    def renew_now(self) -> int:
        by_owner: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for job_id, (attempt, owner) in self.held().items():
            by_owner[owner].append((job_id, attempt))
        return sum(
            self._store.renew(pairs, owner, self._lease_ms) for owner, pairs in by_owner.items()
        )

    def _renew_forever(self) -> None:
        stop = threading.Event()
        while not stop.wait(self._interval):
            self.renew_pass()

    def renew_pass(self) -> bool:
        """One renewal of every held lease; False (and told once per streak) if it failed."""
        if not self.held():
            return True  # nothing asked of Redis: says nothing about it
        try:
            self.renew_now()
        except redis.RedisError as exc:
            # The lease outlives a short outage; the next pass tries again.
            reason = refusal_reason(exc)
            if reason is not None:
                if self._refusals is not None:
                    self._refusals.note(exc, reason)
                self._trouble = "refused"
                return False
            if self._trouble != "unreachable":
                log.warning("durable-retry: could not renew leases: %s; trying again every "
                            "%gs", exc, self._interval)  # fmt: skip
            self._trouble = "unreachable"
            return False
        if self._trouble == "unreachable":
            log.info("durable-retry: leases renewed again")
        if self._trouble is not None and self._refusals is not None:
            self._refusals.accepted()
        self._trouble = None
        return True
