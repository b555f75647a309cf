"""docker-compose.yml and the Dockerfile of the repo, built and run for real.

Rootful podman and podman-compose drive the compose file unchanged; only the
images are local (no registry is reached here: tests/deploy/podman.py makes a
Debian base with debootstrap and builds the project's image on it offline).
Every check talks to the stack from the host, through the ports it publishes on
127.0.0.1, as a user's application and operator would. ``down -v`` at the end,
also on failure.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.deploy import podman

pytestmark = [pytest.mark.deploy, pytest.mark.integration, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "durable-retry-deploy-test"
SERVICES = ["redis", "worker-1", "worker-2", "flower"]
COMPOSE = str(Path(sys.executable).parent / "podman-compose")


@dataclass
class Stack:
    env: dict[str, str] = field(repr=False)  # holds FLOWER_BASIC_AUTH: never print it
    redis_port: int
    flower_port: int
    project: str = PROJECT
    healthy: bool = field(default=False)

    def compose(self, *args: str, timeout: float = 300, env: dict[str, str] | None = None,
                project: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return subprocess.run(
            [COMPOSE, "-p", project or self.project, "-f", str(ROOT / "docker-compose.yml"), *args],
            env=env or self.env, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=timeout,
        )  # fmt: skip

    def podman(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["podman", *args], env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip

    def container(self, service: str) -> str:
        out = self.podman("ps", "-a", "--filter", f"label=io.podman.compose.project={self.project}",
                          "--filter", f"label=com.docker.compose.service={service}",
                          "--format", "{{.Names}}").stdout.split()  # fmt: skip
        assert len(out) == 1, f"expected one container for {service}, found {out}"
        return out[0]

    def logs(self, service: str) -> str:
        result = self.podman("logs", self.container(service))
        return result.stdout + result.stderr

    def redis(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.redis_port, decode_responses=True,
                           socket_timeout=5)  # fmt: skip

    def app(self, *args: str) -> Any:
        """Application code on the host (tests/deploy/client.py), through the published port."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
        env.update(DURABLE_REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0", PYTHONPATH=str(ROOT))
        result = subprocess.run([sys.executable, "-m", "tests.deploy.client", *args], env=env,
                                cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=120)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout)

    def flower_status(self, credentials: str | None) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{self.flower_port}/")
        if credentials is not None:
            token = base64.b64encode(credentials.encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)


def free_port() -> int:
    """A free loopback port to publish on (the deploy test uses only workers/ public API)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_healthy(stack: Stack, services: list[str], timeout: float = 300) -> None:
    """Run each service's own health check (podman runs none by itself without systemd)."""
    pending = list(services)

    def check() -> bool:
        for service in list(pending):
            result = stack.podman("healthcheck", "run", stack.container(service), timeout=60)
            if result.returncode == 0:
                pending.remove(service)
        return not pending

    try:
        wait_for(check, timeout, f"the health checks of {services}", interval=2)
    except AssertionError as error:
        tails = {s: stack.logs(s)[-1500:] for s in pending}
        raise AssertionError(f"{error}; still failing: {pending}; logs: {tails}") from None


def jobs(stack: Stack, ids: list[str]) -> dict[str, dict[str, str]]:
    """The job hashes that exist (none while Redis is unreachable)."""
    client = stack.redis()
    try:
        found = {job_id: client.hgetall(f"durable:job:{job_id}") for job_id in ids}
        return {i: {str(k): str(v) for k, v in f.items()} for i, f in found.items() if f}
    except redis.RedisError:
        return {}
    finally:
        client.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    reason = podman.unavailable()
    if reason:
        pytest.skip(reason)
    conf = podman.write_containers_conf(tmp_path_factory.mktemp("podman"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
    env["CONTAINERS_CONF"] = str(conf)
    base = podman.ensure_base_image(env)
    wheels = ROOT / ".wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    podman.make_wheelhouse(ROOT, wheels, podman.image_python(base, env), env)
    env.update(
        BASE_IMAGE=base, REDIS_IMAGE=base, REDIS_PORT=str(free_port()),
        FLOWER_PORT=str(free_port()), FLOWER_BASIC_AUTH=f"admin:{secrets.token_hex(16)}",
    )  # fmt: skip
    stack = Stack(env, int(env["REDIS_PORT"]), int(env["FLOWER_PORT"]))
    stack.compose("down", "-v")  # what an interrupted earlier run left
    try:
        built = stack.compose("build", "--build-arg", "PIP_NO_INDEX=1",
                              "--build-arg", "PIP_FIND_LINKS=/wheels", timeout=900)  # fmt: skip
        assert built.returncode == 0, (built.stdout + built.stderr)[-4000:]
        up = stack.compose("up", "-d")
        assert up.returncode == 0, (up.stdout + up.stderr)[-4000:]
        yield stack
    finally:
        stack.compose("down", "-v", timeout=400)
        shutil.rmtree(wheels, ignore_errors=True)


@pytest.fixture
def healthy(stack: Stack) -> Stack:
    if not stack.healthy:
        wait_healthy(stack, SERVICES)
        stack.healthy = True
    return stack


def test_every_service_passes_its_health_check(stack: Stack) -> None:
    wait_healthy(stack, SERVICES)
    stack.healthy = True
    for service in SERVICES:
        assert stack.podman("healthcheck", "run", stack.container(service)).returncode == 0


def test_the_image_runs_as_an_unprivileged_user_with_the_jobs_module_wired(healthy: Stack) -> None:
    worker = healthy.container("worker-1")
    assert healthy.podman("exec", worker, "id", "-un").stdout.strip() == "durable"
    # The worker process is celery itself (PID 1 after `exec`), so SIGTERM reaches it.
    cmdline = healthy.podman("exec", worker, "cat", "/proc/1/cmdline").stdout
    assert "celery" in cmdline and "examples.jobs" in cmdline, cmdline


def test_a_sigkilled_workers_waiting_retries_finish_on_the_other(healthy: Stack) -> None:
    # Six failures each (backoff 1s, 2s, ... with full jitter): the chains wait on countdowns.
    ids: list[str] = healthy.app("enqueue", "8", "6")
    worker_1 = healthy.container("worker-1")

    def both_workers_ran_some() -> bool:
        records = jobs(healthy, ids)
        started = all(r.get("state") == "retrying" for r in records.values()) and len(records) == 8
        return started and any(i in healthy.logs("worker-1") for i in ids)

    wait_for(both_workers_ran_some, 90, "every job retrying, some run by worker-1", interval=0.5)
    assert healthy.podman("kill", "-s", "KILL", worker_1).returncode == 0
    killed_at = {i: r for i, r in jobs(healthy, ids).items()}
    ran_on_1 = [i for i in ids if i in healthy.logs("worker-1")]
    waiting = [i for i, r in killed_at.items() if r.get("state") != "succeeded"]
    assert ran_on_1 and waiting, "nothing was waiting on worker-1 when it was killed"

    def all_succeeded() -> bool:
        records = jobs(healthy, ids)
        return len(records) == len(ids) and all(
            r.get("state") == "succeeded" for r in records.values()
        )

    try:
        # The lease (30 s in the compose file) plus a sweep: the dead worker's retries come back.
        wait_for(all_succeeded, 300, "every job to succeed after worker-1 was SIGKILLed", 2)
    except AssertionError as error:
        raise AssertionError(f"{error}: {jobs(healthy, ids)}") from None
    final = healthy.app("status", *ids)
    assert all(final[i] == {"state": "succeeded", "attempts": 7} for i in ids), final
    # Each job that was still waiting finished on worker-2 (the killed one stayed down).
    assert healthy.podman("inspect", "-f", "{{.State.Running}}", worker_1).stdout.strip() == "false"
    log_2 = healthy.logs("worker-2")
    missing = [i for i in waiting if f"[{i}] succeeded" not in log_2]
    assert not missing, f"not finished on worker-2: {missing}"


def test_a_redis_restart_keeps_attempt_counts_from_the_aof_volume(healthy: Stack) -> None:
    ids: list[str] = healthy.app("enqueue", "3", "2")  # three attempts each
    wait_for(lambda: all(r.get("state") == "succeeded" for r in jobs(healthy, ids).values())
             and len(jobs(healthy, ids)) == 3, 120, "the jobs to succeed")  # fmt: skip
    before = healthy.app("status", *ids)
    assert all(before[i] == {"state": "succeeded", "attempts": 3} for i in ids), before
    time.sleep(2)  # appendfsync everysec: every write older than a second is on disk

    # SIGKILL: no save at shutdown, and no periodic snapshot is due: what comes
    # back after the restart can only have come from the AOF.
    first = healthy.container("redis")
    old_pid = healthy.podman("inspect", "-f", "{{.State.Pid}}", first).stdout.strip()
    assert healthy.podman("kill", "-s", "KILL", first).returncode == 0

    def running_again() -> bool:
        state, pid = healthy.podman("inspect", "-f", "{{.State.Status}} {{.State.Pid}}",
                                    first).stdout.split()  # fmt: skip
        if state == "exited":  # the restart policy may or may not have brought it back yet
            healthy.podman("start", first)
        return state == "running" and pid not in ("0", old_pid)

    wait_for(running_again, 60, "the Redis container to run again", interval=2)
    wait_healthy(healthy, ["redis"], timeout=120)
    assert healthy.app("status", *ids) == before

    # And that AOF is on the named volume (a new container would find it there),
    # not in the container's own filesystem.
    template = "{{range .Mounts}}{{.Destination}}={{.Source}} {{end}}"
    mounts = healthy.podman("inspect", "-f", template, first).stdout.split()
    volume = Path(dict(m.split("=", 1) for m in mounts)["/data"])
    aof = b"".join(f.read_bytes() for f in volume.rglob("*.aof*") if f.is_file())
    assert all(i.encode() in aof for i in ids), f"job ids not in an AOF under {volume}"


def test_flower_answers_401_without_credentials_and_200_with_them(healthy: Stack) -> None:
    assert healthy.flower_status(None) == 401
    assert healthy.flower_status("admin:wrong-password") == 401
    status = healthy.flower_status(healthy.env["FLOWER_BASIC_AUTH"])  # not in the assert: secret
    assert status == 200


def test_compose_refuses_to_start_without_flower_basic_auth(stack: Stack) -> None:
    env = {k: v for k, v in stack.env.items() if k != "FLOWER_BASIC_AUTH"}
    project = f"{PROJECT}-noauth"
    try:
        result = stack.compose("up", "-d", "--no-build", env=env, project=project, timeout=120)
        output = result.stdout + result.stderr
        assert result.returncode != 0, output[-3000:]
        assert "FLOWER_BASIC_AUTH" in output
        label = f"label=io.podman.compose.project={project}"
        started = stack.podman("ps", "-a", "--filter", label, "-q").stdout
        assert started.strip() == ""
    finally:
        stack.compose("down", "-v", project=project, timeout=120)
