"""Style and types are part of the suite: a ruff or mypy break fails CI."""

from __future__ import annotations

import subprocess
import sys

from tests.support.worker_process import ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_finds_nothing() -> None:
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing_and_policies_are_strict() -> None:
    result = _run("mypy", "policies", "workers")
    assert result.returncode == 0, result.stdout + result.stderr
