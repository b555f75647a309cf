"""A real Flower for the tests, its HTTP API, and headless Chromium to look at its pages.

Flower runs as ``celery -A tests.jobs flower`` in its own process group, on a
port the kernel picks (``--port=0``; the port is read from its "Visit me at"
log line), with basic auth on like a deployment. Workers that Flower should
see as online send heartbeats (the harness' default worker runs without them,
so Flower would only learn of it from a task event).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.worker_process import ROOT, WorkerProcess, processes_in_group

USER, PASSWORD = "user", "pass"
_VISIT = re.compile(r"Visit me at http://[0-9.]+:(\d+)")


class HeartbeatWorker(WorkerProcess):
    """A harness worker that sends heartbeats (every 2 s), so Flower shows it online."""

    def command(self) -> list[str]:
        return [arg for arg in super().command() if arg != "--without-heartbeat"]


class FlowerProcess:
    """``celery -A tests.jobs flower`` with basic auth, in its own process group."""

    def __init__(self, env: dict[str, str], log_path: Path, *, module: str = "tests.jobs",
                 extra_args: tuple[str, ...] = ()) -> None:  # fmt: skip
        # FLOWER_* variables of the machine would change Flower's options.
        self.env = {k: v for k, v in env.items() if not k.startswith("FLOWER_")}
        self.log_path = log_path
        self.module = module
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", self.module, "flower",
            "--address=127.0.0.1", "--port=0", f"--basic-auth={USER}:{PASSWORD}",
            *self.extra_args,
        ]  # fmt: skip

    def log_text(self) -> str:
        return self.log_path.read_bytes().decode(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 60.0) -> None:
        """Start Flower and wait until its port is known and ``/healthcheck`` answers."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"flower exited:\n{self.log_text()[-4000:]}")
            found = _VISIT.search(self.log_text())
            if found:
                self.port = int(found.group(1))
                with contextlib.suppress(OSError):
                    if self.request("GET", "/healthcheck", auth=False)[0] == 200:
                        return
            time.sleep(0.1)
        raise TimeoutError(f"flower not answering in {timeout}s:\n{self.log_text()[-4000:]}")

    @property
    def base_url(self) -> str:
        assert self.port is not None, "flower not started"
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, params: dict[str, str] | None = None,
                auth: bool = True, timeout: float = 10.0) -> tuple[int, bytes]:  # fmt: skip
        """One HTTP request to Flower: (status, body); HTTP errors are returned, not raised."""
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
        if auth:
            request.add_header("Authorization", basic_auth_header())
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def api(self, path: str, **params: str) -> Any:
        """GET a Flower API path and decode its JSON (fails on any status but 200)."""
        status, body = self.request("GET", path, params or None)
        assert status == 200, f"GET {path} {params}: HTTP {status}: {body[:300]!r}"
        return json.loads(body)

    def task(self, job_id: str) -> dict[str, Any] | None:
        """Flower's row for a task (``/api/task/info``), or None while it has not seen it."""
        status, body = self.request("GET", f"/api/task/info/{job_id}")
        if status == 404:
            return None
        assert status == 200, f"task info {job_id}: HTTP {status}: {body[:300]!r}"
        info: dict[str, Any] = json.loads(body)
        return info

    def revoke(self, job_id: str, terminate: bool = False) -> tuple[int, bytes]:
        params = {"terminate": "true"} if terminate else None
        return self.request("POST", f"/api/task/revoke/{job_id}", params)

    def worker_online(self, name_prefix: str) -> bool:
        """Does ``/api/workers?status=true`` say a worker named ``name_prefix@...`` is alive?"""
        status = self.api("/api/workers", status="true")
        return any(name.startswith(f"{name_prefix}@") and alive for name, alive in status.items())

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Flower saves nothing here: not persistent), SIGKILL if it hangs."""
        if self.process is None:
            return
        pgid = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.process.wait(10)
        deadline = time.monotonic() + 10
        while processes_in_group(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.process = None


def basic_auth_header() -> str:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return f"Basic {token}"


# -- headless Chromium ---------------------------------------------------------

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
)  # fmt: skip


def find_chromium() -> str | None:
    """The path of a Chromium the tests can run (Debian's ``chromium``), or None."""
    override = os.environ.get("CHROMIUM")
    if override:
        return shutil.which(override)
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def run_chromium(binary: str, url: str, *args: str, timeout: float = 60.0) -> str:
    """Run headless Chromium once on ``url`` with a fresh profile; its stdout."""
    profile = tempfile.mkdtemp(prefix="durable-chromium-")
    try:
        done = subprocess.run(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
            capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
            start_new_session=True, check=False,
        )  # fmt: skip
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"chromium exited {done.returncode}:\n{done.stderr.decode(errors='replace')[-3000:]}"
        )
    return done.stdout.decode(errors="replace")
