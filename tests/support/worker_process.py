"""Celery workers as real subprocesses: start, wait until ready, SIGKILL, restart.

Each worker gets its own process group, so a test can SIGKILL the main
process and every pool child at once, as an OOM killer or a lost host would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _live_processes() -> list[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every process that is not a zombie."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command may hold spaces or parentheses: fields start after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            found.append((int(entry.name), int(fields[1]), int(fields[2])))
    return found


def processes_in_group(pgid: int) -> list[int]:
    """Pids whose process group is ``pgid`` (read from /proc)."""
    return [pid for pid, _, group in _live_processes() if group == pgid]


def children_of(pid: int) -> list[int]:
    return [child for child, parent, _ in _live_processes() if parent == pid]


class WorkerProcess:
    """``celery -A <module> worker`` in its own process group (run in ``cwd``)."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        module: str = "tests.jobs",
        name: str = "w1",
        pool: str = "prefork",
        concurrency: int = 2,
        queues: str | None = None,
        extra_args: tuple[str, ...] = (),
        cwd: Path = ROOT,
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.module = module
        self.name = name
        self.pool = pool
        self.concurrency = concurrency
        self.queues = queues
        self.extra_args = extra_args
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def command(self) -> list[str]:
        args = [
            sys.executable, "-m", "celery", "-A", self.module, "worker", "-l", "INFO",
            "-P", self.pool, "-c", str(self.concurrency), "-n", f"{self.name}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-E",
        ]  # fmt: skip
        if self.queues:
            args += ["-Q", self.queues]
        return args + list(self.extra_args)

    def start(self, wait: bool = True, timeout: float = 60.0) -> None:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(), cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        log.close()
        if wait:
            self.wait_ready(timeout)

    def log_text(self, since_start: bool = True) -> str:
        if not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()
        return data[self._log_offset if since_start else 0 :].decode(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log_text():
                return
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited:\n{self.log_text()[-4000:]}")
            time.sleep(0.1)
        tail = self.log_text()[-4000:]
        raise TimeoutError(f"worker {self.name} not ready in {timeout}s:\n{tail}")

    @property
    def pid(self) -> int:
        assert self.process is not None, "worker not started"
        return self.process.pid

    def pool_children(self) -> list[int]:
        return children_of(self.pid)

    def kill(self) -> None:
        """SIGKILL the whole process group: main process and every pool child."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(15)
        # Pool children are reparented to init when the main process dies;
        # wait for the kernel to reap them so "nothing left behind" holds.
        deadline = time.monotonic() + 10
        while processes_in_group(self.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.process = None

    def stop(self, timeout: float = 30.0) -> None:
        """Warm shutdown (SIGTERM): running attempts finish, held messages go back."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return
        self.process = None

    def group_alive(self) -> list[int]:
        return processes_in_group(self.pid) if self.process is not None else []
