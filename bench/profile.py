"""Profile a worker of either side on the success path with py-spy (``pip install py-spy``).

``python -m bench.profile [--side durable] [--pool prefork] [--jobs 20000]
[--job noop|fail_once_0s]`` (``fail_once_0s``: the retry path, scenario 2's job)
records the worker's whole process group while it drains the jobs, writes
py-spy's collapsed stacks and prints where the samples went: the shares of
the durable layer (``workers/``), redis-py, kombu and Celery.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.harness import Bench, check_same_config

# py-spy names frames "function (package/module.py:line)".
GROUPS = {
    "durable layer (workers/)": "(workers/",
    "redis-py (durable store and kombu)": "(redis/",
    "kombu": "(kombu/",
    "celery": "(celery/",
    "billiard (prefork)": "(billiard/",
    "logging": "(logging/",
}


def summarize(collapsed: Path, top: int = 25) -> list[str]:
    """Share of samples per group (a sample counts for every group on its stack)."""
    total = 0
    groups: collections.Counter[str] = collections.Counter()
    leaf_layer: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        for name, marker in GROUPS.items():
            if marker in stack:
                groups[name] += n
        # The outermost frame of workers/ on the stack: what the layer spent it on.
        frames = stack.split(";")
        mine = [f for f in frames if "(workers/" in f]
        if mine:
            leaf_layer[mine[0].split(" (")[0] + " > " + mine[-1].split(" (")[0]] += n
    lines = [f"{total} samples"]
    lines += [f"  {share / total:6.1%}  {name}" for name, share in groups.most_common()]
    lines.append("durable layer, outermost > innermost frame:")
    lines += [f"  {share / total:6.1%}  {name}" for name, share in leaf_layer.most_common(top)]
    return lines


def profile(
    side: str, pool: str, jobs: int, seconds: float, out: Path, job: str = "noop"
) -> list[str]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    check_same_config()
    collapsed = out / f"{side}-{pool}-{job}.txt"
    recorder: dict[str, Any] = {}

    def start(worker: Any) -> None:
        recorder["p"] = subprocess.Popen(
            [spy, "record", "--pid", str(worker.pid), "--subprocesses", "--duration",
             str(int(seconds)), "--rate", "200", "--format", "raw", "--output", str(collapsed),
             "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    with Bench() as bench:
        run = bench.drain(side, job, jobs, pool=pool, profile=start)
    recorder["p"].wait(seconds + 30)
    return [f"{side} {pool}: {run.per_second:.0f} jobs/s while profiled", *summarize(collapsed)]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--side", default="durable", choices=["durable", "plain"])
    parser.add_argument("--pool", default="prefork")
    parser.add_argument("--job", choices=("noop", "fail_once_0s"), default="noop",
                        help="noop: the success path; fail_once_0s: the retry path")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--out", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("\n".join(profile(args.side, args.pool, args.jobs, args.seconds, args.out, args.job)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
