"""The demo: durable retries surviving a SIGKILLed worker, visible in Flower and retryctl.

    ./run demo            the whole story; Ctrl-C stops everything
    ./run demo --smoke    Redis, one worker, one job, clean stop

It starts Redis (embedded, unless DURABLE_REDIS_URL names one), a worker and
Flower, enqueues three example jobs from application code, SIGKILLs the worker
while retries wait on their countdowns and starts another, then shows the
chain carrying on. Without a terminal on stdin it stops by itself at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STORY_TIMEOUT = 180.0

# Short leases and sweeps so the demo recovers in seconds (production: 30 s / 1 s).
DEMO_SETTINGS = {"DURABLE_LEASE_SECONDS": "5", "DURABLE_SWEEP_SECONDS": "0.5"}


def say(message: str = "") -> None:
    print(message, flush=True)


class Progress:
    """One line, rewritten in place on a terminal; every few seconds otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self._last = 0.0

    def show(self, text: str) -> None:
        if self.tty:
            print("\r\033[K" + text, end="", flush=True)
        elif time.monotonic() - self._last >= 5:
            self._last = time.monotonic()
            print(text, flush=True)

    def done(self) -> None:
        if self.tty:
            print(flush=True)


class Process:
    """A child process in its own process group, logging to a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_log(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.log_text():
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                tail = self.log_text()[-3000:]
                raise RuntimeError(f"{self.name} not ready in {timeout:g}s:\n{tail}")
            time.sleep(0.1)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


class Demo:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis: Any = None
        self.processes: list[Process] = []
        self.env: dict[str, str] = {}

    # -- services -------------------------------------------------------------

    def start_redis(self) -> str:
        url = os.environ.get("DURABLE_REDIS_URL")
        if url:
            say("Using the Redis at DURABLE_REDIS_URL (keys under 'durable:').")
            return url
        from workers.ops.embedded_redis import RedisServer

        self.redis = RedisServer(self.workdir / "redis")
        self.redis.start()
        say(f"Started an embedded Redis on 127.0.0.1:{self.redis.port} "
            f"({self.redis.executable}).")  # fmt: skip
        return str(self.redis.url)

    def start_worker(self, name: str) -> Process:
        args = [
            sys.executable, "-m", "celery", "-A", "examples.jobs", "worker", "-l", "INFO",
            "-c", "2", "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-E",
        ]  # fmt: skip
        worker = Process(name, args, self.env, self.workdir / f"{name}.log")
        self.processes.append(worker)
        worker.wait_for_log(" ready.", 60)
        say(f"Worker {name} is up (pid {worker.popen.pid}; log {worker.log}).")
        return worker

    def start_flower(self) -> str:
        from workers.ops.embedded_redis import free_port

        port = free_port()
        args = [
            sys.executable, "-m", "celery", "-A", "examples.jobs", "flower",
            "--address=127.0.0.1", f"--port={port}",
        ]  # fmt: skip
        flower = Process("flower", args, self.env, self.workdir / "flower.log")
        self.processes.append(flower)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/healthcheck", timeout=2) as answer,
            ):
                if answer.status == 200:
                    return url
            time.sleep(0.2)
        raise RuntimeError(f"Flower did not start:\n{flower.log_text()[-3000:]}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        if self.redis is not None:
            self.redis.stop()

    # -- the story ---------------------------------------------------------------

    def configure(self, redis_url: str) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
        self.env.update(DEMO_SETTINGS, DURABLE_REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
        # This process enqueues and reads the store: same settings.
        os.environ.update(DEMO_SETTINGS, DURABLE_REDIS_URL=redis_url)

    def smoke(self) -> int:
        self.configure(self.start_redis())
        self.start_worker("smoke")
        from examples.jobs import charge_card

        job_id = charge_card.delay(1, flaky_attempts=0).id
        record = wait(lambda: _finished(job_id), 60, Progress(),
                      lambda: f"waiting for job {job_id} to finish")  # fmt: skip
        say(f"Job {job_id}: {record.state.value} after {record.attempts} attempt(s).")
        return 0 if record.state.value == "succeeded" else 1

    def story(self, interactive: bool) -> int:
        self.configure(self.start_redis())
        first = self.start_worker("demo1")
        flower_url = self.start_flower()
        say(f"Flower (no login; loopback only in the demo): {flower_url}")
        say()
        from examples.jobs import charge_card, sync_inventory, train_model

        jobs = {
            "charge_card": charge_card.delay(42).id,
            "sync_inventory": sync_inventory.delay("eu-1").id,
            "train_model": train_model.delay("resnet50").id,
        }
        say("Enqueued from application code:")
        say("  charge_card(42)         policy default: fails 3 times (gateway timeout), then works")
        say("  sync_inventory('eu-1')  policy forever (duration: off): fails until killed")
        say("  train_model('resnet50') policy capacity: NoCapacity(retry_after=2) twice")
        say()
        progress = Progress()
        status = lambda: _summary(jobs)  # noqa: E731
        wait(lambda: _attempts(jobs["charge_card"]) >= 2 and _attempts(jobs["sync_inventory"]) >= 2,
             STORY_TIMEOUT, progress, status)  # fmt: skip
        progress.done()
        say()
        say("SIGKILL the worker (whole process group), while retries wait on countdowns in its")
        say("memory. Plain Celery on Redis would bring them back only after the visibility")
        say("timeout (1h by default); here the sweeper of the next worker publishes them once")
        say("they are overdue by a lease, from the schedule kept in Redis.")
        before = {name: _attempts(job_id) for name, job_id in jobs.items()}
        first.kill()
        self.start_worker("demo2")
        wait(
            lambda: _state(jobs["charge_card"]) == "succeeded"
            and _state(jobs["train_model"]) == "succeeded"
            and _attempts(jobs["sync_inventory"]) >= before["sync_inventory"] + 2,
            STORY_TIMEOUT, progress, status,
        )  # fmt: skip
        progress.done()
        say()
        say("The chains carried on where they were (attempts before the kill -> now):")
        for name, job_id in jobs.items():
            say(f"  {name:15} {before[name]} -> {_attempts(job_id)}  ({_state(job_id)})")
        say()
        say("$ retryctl list --state retrying")
        say(_retryctl("list", "--state", "retrying"))
        say(f"Flower: {flower_url}/task/{jobs['sync_inventory']}")
        if interactive:
            say()
            say("sync_inventory retries until you stop it. Try, in another terminal:")
            say(f"  DURABLE_REDIS_URL={self.env['DURABLE_REDIS_URL']} .venv/bin/retryctl "
                f"kill {jobs['sync_inventory']}")  # fmt: skip
            say("Press Ctrl-C to stop the demo.")
            while True:
                time.sleep(3600)
        say(f"$ retryctl kill {jobs['sync_inventory']}")
        say(_retryctl("kill", jobs["sync_inventory"], "--reason", "demo: stopped by the operator"))
        wait(lambda: _state(jobs["sync_inventory"]) == "killed", 30, progress, status)
        progress.done()
        say("sync_inventory is killed and will never run again. Stopping.")
        return 0


def _record(job_id: str) -> Any:
    from workers import app, durable_of
    from workers.ops.control import Control

    return Control.of_runtime(durable_of(app).runtime).status(job_id)


def _attempts(job_id: str) -> int:
    record = _record(job_id)
    return record.attempts if record else 0


def _state(job_id: str) -> str:
    record = _record(job_id)
    return record.state.value if record else "queued"


def _finished(job_id: str) -> Any:
    record = _record(job_id)
    return record if record is not None and record.state.is_terminal else None


def _summary(jobs: dict[str, str]) -> str:
    return " | ".join(f"{name}: {_state(i)} (attempt {_attempts(i)})" for name, i in jobs.items())


def _retryctl(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "workers.ops.cli", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip
    return (result.stdout + result.stderr).rstrip()


def wait(done: Callable[[], Any], timeout: float, progress: Progress,
         status: Callable[[], str]) -> Any:  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        value = done()
        if value:
            return value
        progress.show(status())
        if time.monotonic() > deadline:
            progress.done()
            raise RuntimeError(f"the demo did not get there in {timeout:g}s: {status()}")
        time.sleep(0.3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./run demo", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one worker, one job, clean stop")
    options = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="durable-demo-"))
    demo = Demo(workdir)
    interactive = sys.stdin.isatty()
    try:
        return demo.smoke() if options.smoke else demo.story(interactive)
    except KeyboardInterrupt:
        say()
        say("Ctrl-C: stopping the workers, Flower and Redis.")
        return 0
    except RuntimeError as exc:
        say(f"demo failed: {exc}")
        return 1
    finally:
        demo.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
