"""Running retryctl as an operator does: a new process, settings from the environment."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.worker_process import ROOT


def run_retryctl(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``retryctl ARGS`` against ``redis_url`` (no other DURABLE_* variable set)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
    env["DURABLE_REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, "-m", "workers.ops.cli", *args], cwd=ROOT, env=env, text=True,
        capture_output=True, timeout=60,
    )  # fmt: skip
