"""Running retryctl as an operator does: a new process, settings from the environment."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

from tests.support.worker_process import ROOT


def run_retryctl(
    redis_url: str, *args: str, settings: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``retryctl ARGS`` against ``redis_url`` (no other DURABLE_* variable set but
    ``settings``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
    env.update(settings or {})
    env["DURABLE_REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, "-m", "workers.ops.cli", *args], cwd=ROOT, env=env, text=True,
        capture_output=True, timeout=60,
    )  # fmt: skip


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def plain(text: str) -> str:
    """Terminal output without its escape sequences (colours, cursor moves)."""
    return ANSI.sub("", text)


def run_retryctl_in_pty(redis_url: str, columns: int, *args: str) -> tuple[int, str]:
    """``retryctl ARGS`` with its output on a real pseudo-terminal ``columns`` wide.

    Returns (exit code, what the terminal received, escapes removed). Nothing
    tells retryctl the width but the terminal itself (no COLUMNS).
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DURABLE_") and k not in ("COLUMNS", "LINES", "FORCE_COLOR",
                                                         "TTY_COMPATIBLE", "NO_COLOR")}  # fmt: skip
    env.update(DURABLE_REDIS_URL=redis_url, TERM="xterm")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "workers.ops.cli", *args], cwd=ROOT, env=env,
        stdin=slave, stdout=slave, stderr=slave, close_fds=True,
    )  # fmt: skip
    os.close(slave)
    received = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        received += chunk
    os.close(master)
    return process.wait(timeout=60), plain(received.decode())
