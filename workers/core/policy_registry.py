"""The policies workers serve, registered in Redis so every reader can explain them.

A job records its policy by name. retryctl, on an operator's machine, knows
the built-ins and its own ``DURABLE_POLICY_FILE``, not the inline policies
declared on tasks (``@durable_task(policy={...})``) nor a worker's file. So
each worker, when it starts, writes the policies it serves (its catalogue and
its durable tasks' own) to one hash, ``<prefix>:policies``: field = policy
name, value = JSON of the policy's effective values (what
``parse_policy`` reads back), who wrote it and when.

Bounded: at most :data:`MAX_POLICIES` names (when more, those registered
longest ago are dropped) and :data:`MAX_ENTRY_BYTES` per entry (a larger one is
not registered). Each start overwrites its own names; it never deletes those
other workers wrote.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from policies import PolicyError, RetryPolicy, parse_policy
from workers.core.records import ms_to_datetime
from workers.core.store import Store

log = logging.getLogger(__name__)

MAX_POLICIES = 1000
MAX_ENTRY_BYTES = 16_384


@dataclass(frozen=True)
class Registered:
    """A policy as a worker registered it."""

    policy: RetryPolicy
    worker: str
    registered_at: datetime | None


def encode(policy: RetryPolicy, worker: str, now_ms: int) -> str:
    return json.dumps(
        {"policy": policy.effective(), "worker": worker, "registered_at": now_ms},
        sort_keys=True,
    )


def decode(name: str, entry: str) -> Registered:
    """An entry read back; :class:`PolicyError` if it is not a policy (e.g. written by hand)."""
    try:
        data = json.loads(entry)
        fields, worker, at = data["policy"], str(data.get("worker", "")), data["registered_at"]
    except (ValueError, TypeError, KeyError) as error:
        raise PolicyError(f"registered policy {name!r} is not readable: {error}") from None
    return Registered(parse_policy(fields, name=name), worker, ms_to_datetime(int(at)))


def register(store: Store, policies: Iterable[RetryPolicy], worker: str) -> list[str]:
    """Write ``policies`` (the first of each name wins); returns the names written."""
    now_ms = store.now_ms()
    entries: dict[str, str] = {}
    for policy in policies:
        if policy.name in entries:
            if json.loads(entries[policy.name])["policy"] != policy.effective():
                log.warning("durable-retry: two different policies are named %s; the first "
                            "is registered", policy.name)  # fmt: skip
            continue
        entry = encode(policy, worker, now_ms)
        if len(entry.encode()) > MAX_ENTRY_BYTES:
            log.warning("durable-retry: policy %s not registered: %d bytes, more than %d",
                        policy.name, len(entry.encode()), MAX_ENTRY_BYTES)  # fmt: skip
            continue
        if len(entries) >= MAX_POLICIES:
            log.warning("durable-retry: only the first %d policies are registered", MAX_POLICIES)
            break
        entries[policy.name] = entry
    if store.write_policies(entries) > MAX_POLICIES:
        _drop_oldest(store, keep=MAX_POLICIES, written=set(entries))
    return list(entries)


def _drop_oldest(store: Store, keep: int, written: set[str]) -> None:
    """Drop the oldest entries past ``keep``; the ones just ``written`` stay (two
    registrations in the same millisecond cannot be told apart by their time)."""

    def registered_at(item: tuple[str, str]) -> int:
        try:
            return int(json.loads(item[1])["registered_at"])
        except (ValueError, TypeError, KeyError):
            return 0  # unreadable entries go first

    others = [item for item in store.policy_entries().items() if item[0] not in written]
    others.sort(key=registered_at, reverse=True)
    room = max(0, keep - len(written))
    store.drop_policies([name for name, _ in others[room:]])


def lookup(store: Store, name: str) -> Registered | None:
    """The policy workers registered under ``name``, or None."""
    entry = store.policy_entry(name)
    return None if entry is None else decode(name, entry)
