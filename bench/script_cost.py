"""What each state-transition script costs Redis, counted in instructions, not timed.

``python -m bench.script_cost [--calls 500] [--against REV] [--short]``

Redis runs under valgrind's callgrind (Debian's ``valgrind``), which counts the
instructions the server executes: the same count for the same scripts, inputs
and server binary, however loaded the machine is. Timing a script on a shared
two-core machine moves by ±15% from one run to the next (bench/FINDINGS.md);
a count moves by less than 1%. For each of a job's paths (a bare ``return 1``
for the fixed cost of any EVALSHA, claim and succeed of a first attempt, a
failure whose countdown retry the broker holds, and that retry's claim) it
prints the instructions per call, and with ``--against REV`` the same scripts
as they were at git revision ``REV``, side by side.

The counts are user-space work only: what the kernel spends on each round trip
(most of a whole-server "Redis CPU per job" on these machines) is not in them.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

import workers.core.store as store_module
from workers.core.outcomes import Payload
from workers.core.store import Store
from workers.ops.embedded_redis import find_redis_server, free_port

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("bare EVALSHA", "claim, first attempt", "succeed", "fail (countdown retry)",
         "claim, the retry")  # fmt: skip


def lua_text_at(revision: str) -> Callable[..., str]:
    """A stand-in for the store's ``_lua_text`` that reads the scripts as they were
    at ``revision`` (``git show``)."""

    def read(*parts: str) -> str:
        path = "/".join(("workers", "core", "lua", *parts))
        return subprocess.run(
            ["git", "show", f"{revision}:{path}"], cwd=ROOT, check=True, capture_output=True,
            text=True,
        ).stdout  # fmt: skip

    return read


class CountedRedis:
    """A redis-server under callgrind on a free loopback port; ``count`` runs an action
    and answers the instructions the server executed meanwhile."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.port = free_port()
        self.process = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/redis.%p",
             find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.client = redis.Redis(port=self.port, decode_responses=True)
        for _ in range(600):  # valgrind takes seconds to start the server
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("redis-server did not answer under valgrind within 60 s")

    def _control(self, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(self.process.pid)], check=True,
                       capture_output=True)  # fmt: skip

    def count(self, name: str, action: Callable[[], Any]) -> int:
        self._control("--zero")
        action()
        self._control(f"--dump={name}")
        for path in self.out.glob(f"redis.{self.process.pid}.*"):
            text = path.read_text(errors="replace")
            if f"Trigger: dump {name}\n" in text:
                for line in text.splitlines():
                    if line.startswith("summary:"):
                        return int(line.split()[1])
        raise RuntimeError(f"callgrind wrote no dump named {name}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def measure(revision: str | None, calls: int, short: bool) -> dict[str, float]:
    """Instructions per call of each path, with the scripts of ``revision`` (None: the
    working tree's)."""
    with tempfile.TemporaryDirectory(prefix="script-cost-") as tmp:
        server = CountedRedis(Path(tmp))
        try:
            own = store_module._lua_text
            if revision is not None:
                store_module._lua_text = lua_text_at(revision)
            try:
                store = Store(server.client, short_fields=short)
            finally:
                store_module._lua_text = own
            return run_paths(server, store, calls)
        finally:
            server.stop()


def run_paths(server: CountedRedis, store: Store, calls: int) -> dict[str, float]:
    payload = Payload('[1, "two"]', "{}", "celery", "")
    ok = [f"ok-{i}" for i in range(calls)]
    failing = [f"failing-{i}" for i in range(calls)]
    for job_id in (*ok, *failing):
        store.enqueue(job_id, task="bench.noop", policy="forever", payload=payload)
    bare = store.redis.register_script("return 1")
    bare()  # loaded outside what is counted, as the store's scripts are by their first call

    def claim(ids: list[str], attempt: int) -> Callable[[], None]:
        def run() -> None:
            for job_id in ids:
                store.claim(job_id, attempt, task="bench.noop", policy="forever",
                            owner="bench:1", lease_ms=5000, token=f"t{attempt}")  # fmt: skip

        return run

    for job_id in ("warm-1", "warm-2"):  # every script loaded once before counting
        store.enqueue(job_id, task="bench.noop", policy="forever", payload=payload)
        claim([job_id], 1)()
    store.succeed("warm-1", 1, "bench:1", 86_400_000)

    def succeed_all() -> None:
        for job_id in ok:
            store.succeed(job_id, 1, "bench:1", 86_400_000)

    def fail_all() -> None:
        for job_id in failing:
            store.fail(job_id, 1, "bench:1", event="error", error="E", reason="r",
                       give_up=False, delay_ms=1000, sweeper_grace_ms=50_000,
                       retention_ms=86_400_000, token="t1")  # fmt: skip

    store.fail("warm-2", 1, "bench:1", event="error", error="E", reason="r", give_up=False,
               delay_ms=1000, sweeper_grace_ms=50_000, retention_ms=86_400_000)  # fmt: skip
    counted = {
        PATHS[0]: server.count("bare", lambda: [bare() for _ in range(calls)]),
        PATHS[1]: server.count("claim", claim(ok, 1)),
        PATHS[2]: server.count("succeed", succeed_all),
    }
    claim(failing, 1)()
    counted[PATHS[3]] = server.count("fail", fail_all)
    counted[PATHS[4]] = server.count("retry", claim(failing, 2))
    return {name: total / calls for name, total in counted.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.script_cost", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--calls", type=int, default=500, help="calls of each path (500)")
    parser.add_argument("--against", metavar="REV", help="also count the scripts of git REV")
    parser.add_argument(
        "--short",
        action="store_true",
        help="records with short field names (DURABLE_RECORD_FIELDS=short)",
    )
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error(f"--calls must be 1 or more, not {args.calls}")
    if args.against:
        found = subprocess.run(["git", "rev-parse", "--verify", f"{args.against}^{{commit}}"],
                               cwd=ROOT, capture_output=True, text=True)  # fmt: skip
        if found.returncode != 0:
            parser.error(f"--against {args.against!r} is not a git revision of this checkout")
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        print(f"script_cost: needs {' and '.join(missing)} (Debian's valgrind package: "
              "apt-get install valgrind)", file=sys.stderr)  # fmt: skip
        return 2
    now = measure(None, args.calls, args.short)
    then = measure(args.against, args.calls, args.short) if args.against else None
    names = "short" if args.short else "long"
    print(f"Redis instructions per call ({args.calls} calls each, {names} field names, "
          f"{find_redis_server()}):")  # fmt: skip
    header = f"  {'path':26} {'this tree':>12}"
    if then:
        header += f" {args.against:>12} {'ratio':>7}"
    print(header)
    for name in PATHS:
        line = f"  {name:26} {now[name]:12,.0f}"
        if then:
            line += f" {then[name]:12,.0f} {now[name] / then[name]:6.2f}x"
        print(line)
    job = now[PATHS[1]] + now[PATHS[2]]
    line = f"  {'success path (claim+succeed)':26} {job:12,.0f}"
    if then:
        before = then[PATHS[1]] + then[PATHS[2]]
        line += f" {before:12,.0f} {job / before:6.2f}x"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
