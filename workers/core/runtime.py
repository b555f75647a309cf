"""What one Celery app's durable jobs use to talk to their state: settings,
the policy catalogue, the store, the lease keeper and the refusal count.

The integration layer makes one :class:`Runtime` per app (``install(app)``)
and hands it to every part that needs it; nothing here is a module global.
Pieces are built on first use, so making a Runtime reads no file and opens no
connection; a forked pool child keeps it (redis-py makes new connections after
a fork, and the lease keeper starts its thread again in the child).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import redis
from redis.sentinel import MasterNotFoundError

from policies import Catalog, load_catalog
from workers.core.errors import StateUnavailable
from workers.core.leases import LeaseKeeper
from workers.core.refusals import Refusals, refusal_reason
from workers.core.settings import Settings, SettingsError, redact_url
from workers.core.store import Store
from workers.core.webhook import send_webhook

log = logging.getLogger(__name__)
T = TypeVar("T")
# A countdown retry held by a live worker is published anyway once it is this
# many leases overdue: a safety net for a message lost without a worker dying.
SAFETY_LEASES = 10


@dataclass
class Runtime:
    """The job state of one deployment, as this process reaches it."""

    settings: Settings

    @cached_property
    def store(self) -> Store:
        return Store.from_settings(self.settings)

    @cached_property
    def catalog(self) -> Catalog:
        return load_catalog(self.settings.policy_file)

    @cached_property
    def leases(self) -> LeaseKeeper:
        return LeaseKeeper(self.store, self.settings.lease_seconds, self.refusals)

    @cached_property
    def refusals(self) -> Refusals:
        url = self.settings.alert_webhook
        return Refusals(
            self.settings.redis_url,
            client=lambda: self.store.redis,
            alert=(lambda payload: send_webhook(url, payload)) if url else None,
            store_counts=lambda counts: self.store.add_stats(counts),
        )

    @property
    def lease_ms(self) -> int:
        return int(self.settings.lease_seconds * 1000)

    @property
    def held_safety_ms(self) -> int:
        """How long after its due time a retry a broker message holds is published
        anyway (a message lost without a worker death): ``SAFETY_LEASES`` leases.
        Its due-set entry is scored there from the start, so a healthy fleet's
        sweepers never touch it; a noticed death pulls it forward (pull_held)."""
        return SAFETY_LEASES * self.lease_ms

    @property
    def longest_retry_pause(self) -> float:
        """The longest pause, in seconds, between two tries of a Redis call.

        A claim refused by WAIT (replicas behind) is retried, and each try renews
        the attempt's lease; a try lasts up to one WAIT. The pause is capped so that
        a WAIT and a pause together take at most half the lease: otherwise a
        sweeper could take the lease of a live worker between two tries, and the
        attempt would be judged interrupted before its body ran. 2 s at most
        (the default 30 s lease), 50 ms at least.
        """
        wait = self.settings.redis_min_replicas_timeout if self.settings.redis_min_replicas else 0.0
        room = self.settings.lease_seconds / 2 - wait
        return max(0.05, min(2.0, room))

    def check_record_fields(self) -> None:
        """With ``DURABLE_RECORD_FIELDS=short``, refuse to start while a worker of an
        older release is alive: it would read a short record as missing, and run an
        attempt that claim should have fenced. An unreachable Redis is not checked
        (the worker waits for it as for any outage)."""
        if self.settings.record_fields != "short":
            return
        try:
            older = self.store.nodes_reading_long_names_only()
        except redis.RedisError as exc:
            log.warning("durable-retry: DURABLE_RECORD_FIELDS=short not checked against "
                        "the fleet (%s)", _short(exc))  # fmt: skip
            return
        if older:
            shown = ", ".join(older[:5]) + (f" and {len(older) - 5} more" if len(older) > 5 else "")
            raise SettingsError(
                f"DURABLE_RECORD_FIELDS=short, but {len(older)} live worker(s) run a release "
                f"that reads only long field names: {shown}. Roll every worker and producer "
                "to this release first (with DURABLE_RECORD_FIELDS=long, the default), "
                "then set short (docs/DEPLOYING.md)."
            )

    def call_redis(self, action: Callable[[], T], what: str) -> T:
        """Run ``action``, retrying while Redis is unreachable or refuses writes;
        then raise StateUnavailable.

        Nothing about an attempt may be guessed without Redis, so after
        ``DURABLE_REDIS_WAIT_SECONDS`` the caller gives up (a worker hands the
        message back to the broker, which delivers it again; the store decides then).
        A refusal (out of memory, read-only, MISCONF...: see ``workers.core.refusals``)
        is waited on the same way; it is told once per streak, not per call.
        """
        deadline = time.monotonic() + self.settings.redis_wait_seconds
        longest = self.longest_retry_pause
        pause = min(0.1, longest)
        while True:
            try:
                result = action()
            except redis.RedisError as exc:
                reason = refusal_reason(exc)
                if reason is None and not isinstance(exc, (redis.ConnectionError,
                                                           redis.TimeoutError)):  # fmt: skip
                    raise
                if reason is not None:
                    self.refusals.note(exc, reason)
                if time.monotonic() >= deadline:
                    if reason is not None:
                        log.info("durable-retry: Redis refused writes (%s) for %gs while %s; "
                                 "handing the message back to the broker", reason,
                                 self.settings.redis_wait_seconds, what)  # fmt: skip
                        raise StateUnavailable(f"Redis refuses writes ({reason}) while {what}") \
                            from exc
                    log.error(
                        "durable-retry: Redis at %s unreachable while %s (%s); "
                        "handing the message back to the broker",
                        redact_url(self.settings.redis_url), what, _short(exc),
                    )  # fmt: skip
                    raise StateUnavailable(f"Redis unreachable while {what}") from exc
                if reason is None:
                    log.warning("durable-retry: Redis unreachable while %s: %s; retrying",
                                what, _short(exc))  # fmt: skip
                time.sleep(pause)
                pause = min(pause * 2, longest)
            else:
                self.refusals.accepted()
                return result


def _short(exc: BaseException) -> str:
    """The error for a log line: redis-py's MasterNotFoundError text is the repr of
    every sentinel connection (kilobytes), so it is said in a few words instead."""
    if isinstance(exc, MasterNotFoundError):
        return "no sentinel answers with a master (failover under way, or sentinels down)"
    return str(exc)
