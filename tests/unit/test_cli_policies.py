"""retryctl policies list / show / check / simulate, through click's test runner."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from workers.ops.cli import cli
from workers.ops.cli.common import ExitCode


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    # Only the built-ins unless a test names a file (the suite's conftest sets one).
    environment: dict[str, str | None] = {"DURABLE_POLICY_FILE": None, **(env or {})}
    return CliRunner(env=environment).invoke(cli, list(args))


def run_json(*args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == ExitCode.OK, result.output
    return json.loads(result.stdout)


@pytest.fixture
def policy_file(tmp_path: Path) -> str:
    path = tmp_path / "policies.yaml"
    path.write_text(
        "policies:\n"
        "  flaky-api:\n"
        "    description: the partner API\n"
        "    duration: 2h\n"
        "    max_attempts: 10\n"
        "    retry_on: [ConnectionError]\n"
        "  forever:\n"
        "    duration: off\n"
    )
    return str(path)


def test_list_prints_one_line_per_policy() -> None:
    result = run("policies", "list")
    assert result.exit_code == ExitCode.OK
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SOURCE", "DURATION", "MAX_ATTEMPTS", "ON_EVENTS"]
    assert lines[2].split() == [
        "default", "builtin", "1h", "off", "error,no-capacity,interruption,timeout"
    ]
    assert len(lines) == 4


def test_list_json_gives_every_policy_with_its_source(policy_file: str) -> None:
    listed = run_json("policies", "list", "--policy-file", policy_file)
    by_name = {item["name"]: item for item in listed}
    assert sorted(by_name) == ["capacity", "default", "flaky-api", "forever"]
    assert by_name["flaky-api"]["source"] == policy_file
    assert by_name["flaky-api"]["duration"] == "2h"
    assert by_name["flaky-api"]["max_attempts"] == 10
    assert by_name["forever"]["source"] == policy_file


def test_policy_file_comes_from_the_environment(policy_file: str) -> None:
    result = run("policies", "show", "flaky-api", env={"DURABLE_POLICY_FILE": policy_file})
    assert result.exit_code == ExitCode.OK, result.output
    assert f"policy: flaky-api ({policy_file})" in result.stdout


def test_show_json_gives_every_effective_field() -> None:
    shown = run_json("policies", "show", "default")
    assert shown["duration"] == "1h"
    assert shown["max_attempts"] == "off"
    assert shown["backoff"] == {"initial": "1s", "factor": 2.0, "max": "10m", "jitter": "full"}
    assert shown["source"] == "builtin"
    assert set(shown) >= {"on_events", "retry_on", "never_retry", "events", "alert_after",
                          "max_retrying", "retry_queue"}


def test_show_states_the_default_one_hour_window() -> None:
    result = run("policies", "show", "default")
    assert "1h is the default retry window" in result.stdout


def test_show_does_not_mention_the_default_window_for_forever() -> None:
    result = run("policies", "show", "forever")
    assert result.exit_code == ExitCode.OK
    assert "duration: off" in result.stdout
    assert "default retry window" not in result.stdout


def test_show_unknown_policy_exits_2_listing_the_names() -> None:
    result = run("policies", "show", "forevr")
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr == (
        "retryctl: error: unknown policy 'forevr'; known policies: capacity, default, forever; "
        "did you mean forever?\n"
        "retryctl: error: no worker registered a policy 'forevr' in Redis either (workers "
        "register the policies they serve when they start)\n"
    )


def test_check_reports_the_files_policies(policy_file: str) -> None:
    result = run("policies", "check", policy_file)
    assert result.exit_code == ExitCode.OK
    assert result.stdout == "ok: 2 policies (flaky-api, forever [replaces built-in])\n"


def test_check_reports_each_problem_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("policies:\n  a:\n    max_attempts: 0\n  b:\n    backoff: {max: off}\n")
    result = run("policies", "check", str(path))
    assert result.exit_code == ExitCode.USAGE
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"retryctl: error: {path}: policy 'a': max_attempts: got 0")
    assert lines[1].startswith(f"retryctl: error: {path}: policy 'b': backoff.max: 'off'")


def test_check_missing_file_exits_2(tmp_path: Path) -> None:
    result = run("policies", "check", str(tmp_path / "nope.yaml"))
    assert result.exit_code == ExitCode.USAGE
    assert "nope.yaml: cannot read the policy file" in result.stderr


def test_bad_policy_file_for_list_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("policies: [\n")
    result = run("policies", "list", "--policy-file", str(path))
    assert result.exit_code == ExitCode.USAGE
    assert "not valid YAML" in result.stderr


def test_simulate_default_gives_up_when_the_window_is_used(policy_file: str) -> None:
    simulated = run_json("policies", "simulate", "default", "--attempts", "100", "--seed", "1")
    gave_up = simulated["gave_up"]
    assert gave_up["limit"] == "duration"
    assert gave_up["attempt"] == len(simulated["steps"]) < 100
    assert all(step["next_attempt_at"] <= 3600 for step in simulated["steps"][:-1])


def test_simulate_schedule_delays_add_up(policy_file: str) -> None:
    simulated = run_json("policies", "simulate", "forever", "--attempts", "30")
    steps = simulated["steps"]
    for step, following in itertools.pairwise(steps):
        assert following["failed_at"] == pytest.approx(step["failed_at"] + step["delay"])


def test_simulate_same_seed_gives_the_same_schedule() -> None:
    first = run_json("policies", "simulate", "default", "--attempts", "50", "--seed", "9")
    again = run_json("policies", "simulate", "default", "--attempts", "50", "--seed", "9")
    other = run_json("policies", "simulate", "default", "--attempts", "50", "--seed", "10")
    assert first == again
    assert first["steps"] != other["steps"]


def test_simulate_forever_never_gives_up() -> None:
    result = run("policies", "simulate", "forever", "--attempts", "500")
    assert result.exit_code == ExitCode.OK
    assert "never gives up within 500 attempts" in result.stdout


def test_simulate_max_attempts_gives_up_at_the_limit(policy_file: str) -> None:
    simulated = run_json(
        "policies", "simulate", "flaky-api", "--attempts", "50", "--policy-file", policy_file,
        "--error-type", "ConnectionRefusedError",
    )
    assert simulated["gave_up"]["attempt"] == 10
    assert simulated["gave_up"]["limit"] == "max_attempts"


def test_simulate_error_outside_retry_on_gives_up_at_once(policy_file: str) -> None:
    simulated = run_json(
        "policies", "simulate", "flaky-api", "--policy-file", policy_file,
        "--error-type", "ValueError",
    )
    assert simulated["gave_up"]["attempt"] == 1
    assert simulated["gave_up"]["limit"] == "not_retry_on"


def test_simulate_no_capacity_uses_the_capacity_backoff() -> None:
    simulated = run_json(
        "policies", "simulate", "capacity", "--event", "no-capacity", "--attempts", "40"
    )
    assert simulated["gave_up"] is None
    assert max(step["delay"] for step in simulated["steps"]) <= 300


def test_simulate_retry_after_is_the_delay_until_the_window_ends() -> None:
    simulated = run_json(
        "policies", "simulate", "default", "--retry-after", "25m", "--attempts", "20"
    )
    # 25m is above default's backoff max (10m): every delay is the hint, and the
    # third failure, at 50m, would come back after the 1h window ends.
    assert [step["delay"] for step in simulated["steps"][:-1]] == [1500.0] * 2
    assert simulated["gave_up"]["attempt"] == 3
    assert simulated["gave_up"]["limit"] == "duration"
    assert "(duration) ends before the job's retry_after of 25m" in simulated["gave_up"]["reason"]


def test_simulate_text_names_the_hint() -> None:
    result = run("policies", "simulate", "default", "--retry-after", "15m")
    assert result.exit_code == ExitCode.OK, result.output
    assert "asking to come back in 15m (retry_after)" in result.stdout


@pytest.mark.parametrize("attempts", ["0", "100001"])
def test_simulate_attempts_out_of_range_exits_2(attempts: str) -> None:
    result = run("policies", "simulate", "default", "--attempts", attempts)
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr == (
        f"retryctl: error: --attempts: got {attempts}; accepted: 1 to 100000\n"
    )


def test_simulate_bad_attempt_time_exits_2() -> None:
    result = run("policies", "simulate", "default", "--attempt-time", "soon")
    assert result.exit_code == ExitCode.USAGE
    assert "--attempt-time: 'soon' is not a duration" in result.stderr


def test_simulate_unknown_event_is_a_usage_error() -> None:
    result = run("policies", "simulate", "default", "--event", "crash")
    assert result.exit_code == ExitCode.USAGE
    assert "'crash' is not one of" in result.stderr


def test_simulate_unknown_policy_exits_2() -> None:
    result = run("policies", "simulate", "forevr")
    assert result.exit_code == ExitCode.USAGE
    assert "known policies: capacity, default, forever" in result.stderr
