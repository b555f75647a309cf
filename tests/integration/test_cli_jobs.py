"""retryctl list / show / kill / resume / retry-now / purge / watch against the real Redis.

Jobs in a given state are made by the store's own scripts (claim, fail,
succeed, kill), the path real workers take; one test runs a real worker.
``make_job`` is shared with the alert and metrics tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from tests import jobs
from tests.conftest import wait_for
from tests.support.cli import plain, run_retryctl_in_pty
from tests.support.ops import control, runtime
from tests.support.worker_process import ROOT
from workers import JobState
from workers.core.outcomes import Payload
from workers.core.store import Claimed, Store
from workers.ops.cli import cli
from workers.ops.cli.common import ExitCode
from workers.ops.embedded_redis import free_port

pytestmark = pytest.mark.integration

OWNER = "test-host:1"
RETENTION_MS = 3_600_000


def make_job(
    store: Store,
    state: JobState,
    *,
    policy: str = "fast-forever",
    task: str = "tests.jobs.always_fails",
    job_id: str | None = None,
    error: str = "RuntimeError: upstream said no",
    event: str = "error",
    delay_ms: int = 600_000,
    failures: int = 1,
) -> str:
    """A job in ``state`` after ``failures`` failed attempts, made through the store's scripts.

    Running, succeeded and killed jobs are made at their first attempt.
    """
    job_id = job_id or str(uuid.uuid4())

    def claim(attempt: int) -> None:
        claimed = store.claim(
            job_id, attempt, task=task, policy=policy, owner=OWNER, lease_ms=600_000,
            payload=Payload('["secret-argument"]', "{}", "celery"),
        )  # fmt: skip
        assert isinstance(claimed, Claimed), claimed

    claim(1)
    if state is JobState.SUCCEEDED:
        assert store.succeed(job_id, 1, OWNER, RETENTION_MS)
    elif state is JobState.KILLED:
        store.kill(job_id, "test kill", RETENTION_MS, False)
    elif state is not JobState.RUNNING:
        for attempt in range(1, failures + 1):
            if attempt > 1:
                claim(attempt)
            last = attempt == failures
            store.fail(
                job_id, attempt, OWNER, event=event, error=error,
                reason=f"attempt {attempt} failed; retry in {delay_ms}ms",
                give_up=last and state is JobState.DEAD, delay_ms=delay_ms,
                max_retrying=0 if last and state is JobState.PARKED else None,
                retention_ms=RETENTION_MS,
            )  # fmt: skip
        if state is JobState.QUEUED:
            store.dispatched([job_id])
    fields = store.get(job_id)
    assert fields is not None and fields["state"] == state.value, fields
    return job_id


def run(*args: str, input: str | None = None, env: dict[str, Any] | None = None) -> Result:
    return CliRunner(env=env).invoke(cli, list(args), input=input)


def run_json(*args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == ExitCode.OK, result.output
    return json.loads(result.stdout)


def closed_port() -> int:
    """A loopback port where nothing listens (outside the ephemeral range: see free_port)."""
    return free_port()


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return runtime().store


# -- list -------------------------------------------------------------------------------


def test_list_shows_live_jobs_one_line_each_with_failing_since_and_next_attempt(store):
    retrying = make_job(store, JobState.RETRYING, error="RuntimeError: line one\nline two")
    parked = make_job(store, JobState.PARKED)
    running = make_job(store, JobState.RUNNING)
    dead = make_job(store, JobState.DEAD)

    result = run("list")

    assert result.exit_code == ExitCode.OK, result.output
    lines = result.stdout.splitlines()
    row = next(line for line in lines if retrying in line)
    assert "fast-forever" in row and "retrying" in row and "tests.jobs.always_fails" in row
    assert "(in 10m)" in row or "(in 9m59s)" in row  # next attempt, absolute and relative
    assert "RuntimeError: line one line two" in row  # the error on the job's one line
    assert any(parked in line and "parked" in line for line in lines)
    assert any(running in line and "running" in line for line in lines)
    assert dead not in result.stdout  # ended jobs only with --state
    assert dead in run("list", "--state", "dead").stdout


def test_list_filters_by_state_policy_and_task_and_limits(store):
    a = make_job(store, JobState.RETRYING, policy="fast-forever")
    b = make_job(store, JobState.RETRYING, policy="three-tries", task="tests.jobs.kills_once")
    make_job(store, JobState.RETRYING, policy="three-tries")

    assert [j["id"] for j in run_json("list", "--policy", "fast-forever")] == [a]
    assert [j["id"] for j in run_json("list", "--task", "tests.jobs.kills_once")] == [b]
    assert len(run_json("list", "--limit", "2")) == 2
    assert run_json("list", "--state", "succeeded") == []
    assert run("list", "--limit", "0").exit_code == ExitCode.USAGE


def test_list_json_carries_the_record_and_how_long_it_failed_and_waits(store):
    job_id = make_job(store, JobState.RETRYING, failures=2, event="no-capacity")
    [job] = run_json("list")
    assert job["id"] == job_id
    assert job["state"] == "retrying" and job["attempts"] == 2
    assert job["failures"] == {"no-capacity": 2}
    assert job["failing_for_seconds"] >= 0
    assert 590 < job["next_attempt_in_seconds"] <= 600
    assert job["stuck"] is False
    assert "args" not in job  # list shows no job arguments


def test_list_stuck_shows_only_jobs_reported_stuck(store):
    stuck = make_job(store, JobState.RETRYING)
    make_job(store, JobState.RETRYING)
    assert store.mark_stuck(stuck, 0) is not None

    listed = run_json("list", "--stuck")
    assert [j["id"] for j in listed] == [stuck] and listed[0]["stuck"] is True
    assert f"{stuck}" in run("list", "--stuck").stdout
    assert "retrying, stuck" in run("list").stdout


# -- show -------------------------------------------------------------------------------


def test_show_prints_the_record_the_effective_policy_and_why_it_runs_again(store):
    job_id = make_job(store, JobState.RETRYING, failures=2)

    result = run("show", job_id)

    assert result.exit_code == ExitCode.OK, result.output
    out = result.stdout
    assert f"job            {job_id}" in out or job_id in out.splitlines()[0]
    assert "2 (2 in this failure streak)" in out
    assert "RuntimeError: upstream said no" in out
    assert '["secret-argument"]' in out  # show is everything the store knows
    assert "it runs again: attempt 3 is due" in out
    assert "window: off" in out
    assert "policy fast-forever (effective values; " in out and "policies.yaml):" in out
    assert "duration: 'off'" in out or "duration: off" in out

    data = run_json("show", job_id)
    assert data["job"]["attempts"] == 2
    assert data["fields"]["args"] == '["secret-argument"]'
    assert data["policy"]["name"] == "fast-forever" and data["policy"]["duration"] == "off"
    assert any("runs again" in line for line in data["why"])


def test_show_dead_job_says_it_gave_up_and_how_to_bring_it_back(store):
    job_id = make_job(store, JobState.DEAD)
    data = run_json("show", job_id)
    assert data["job"]["state"] == "dead"
    assert data["record_expires_at"] is not None
    assert any("will not run again" in line for line in data["why"])
    assert any(f"retryctl resume {job_id}" in line for line in data["why"])


def test_show_unknown_job_exits_1(store):
    result = run("show", "never-seen-job")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "not found" in result.stderr


# -- kill -------------------------------------------------------------------------------


def test_kill_by_id_records_the_kill_and_is_idempotent(store):
    job_id = make_job(store, JobState.RETRYING)

    result = run("kill", job_id, "--reason", "bad data")

    assert result.exit_code == ExitCode.OK, result.output
    assert f"killed {job_id} (was retrying)" in result.stdout
    record = control.status(job_id)
    assert record is not None and record.state is JobState.KILLED
    assert record.killed_reason == "bad data"
    assert store.index_size(store.keys.due) == 0
    again = run("kill", job_id)
    assert again.exit_code == ExitCode.OK and "already killed" in again.stdout


def test_kill_of_a_job_never_seen_exits_1_with_a_hint_and_force_records_it(store):
    job_id = str(uuid.uuid4())

    result = run("kill", job_id)

    assert result.exit_code == ExitCode.NOT_FOUND
    assert f"retryctl kill --force {job_id}" in result.stderr
    assert store.get(job_id) is None

    forced = run("kill", "--force", job_id)
    assert forced.exit_code == ExitCode.OK, forced.output
    # The message that comes later is dropped at claim.
    dropped = store.claim(job_id, 1, task="t", policy="fast", owner=OWNER, lease_ms=1000)
    assert getattr(dropped, "state", None) == "killed"


def test_bulk_kill_by_policy_asks_and_refuses_without_an_answer(store):
    doomed = [make_job(store, JobState.RETRYING, policy="three-tries") for _ in range(2)]
    spared = make_job(store, JobState.RETRYING, policy="fast-forever")

    refused = run("kill", "--policy", "three-tries", input="")
    assert refused.exit_code == ExitCode.USAGE
    assert "--yes" in refused.stderr
    assert all(store.get(j)["state"] == "retrying" for j in doomed)

    declined = run("kill", "--policy", "three-tries", input="n\n")
    assert declined.exit_code == ExitCode.OK and "nothing done" in declined.stderr
    assert all(store.get(j)["state"] == "retrying" for j in doomed)

    confirmed = run("kill", "--policy", "three-tries", input="y\n")
    assert confirmed.exit_code == ExitCode.OK, confirmed.output
    assert "kill 2 jobs (policy=three-tries)?" in confirmed.stderr
    assert all(store.get(j)["state"] == "killed" for j in doomed)
    assert store.get(spared)["state"] == "retrying"


def test_kill_refuses_ids_and_filters_together_and_nothing_at_all(store):
    assert run("kill", "some-id", "--policy", "fast").exit_code == ExitCode.USAGE
    assert run("kill").exit_code == ExitCode.USAGE


# -- resume, retry-now ----------------------------------------------------------------------


def test_resume_brings_a_dead_job_back_keeping_attempts_with_a_new_window(store):
    job_id = make_job(store, JobState.DEAD, failures=3)

    result = run("resume", job_id)

    assert result.exit_code == ExitCode.OK, result.output
    assert f"resumed {job_id} (was dead)" in result.stdout
    fields = store.get(job_id)
    assert fields is not None
    assert fields["state"] == "retrying" and fields["attempt"] == "3"
    assert "first_failure_at" not in fields and fields["streak_base"] == "3"


def test_resume_bulk_by_state_with_yes_and_refuses_a_retrying_job(store):
    parked = make_job(store, JobState.PARKED)
    dead = make_job(store, JobState.DEAD)
    retrying = make_job(store, JobState.RETRYING)

    bulk = run("resume", "--state", "parked", "--yes")
    assert bulk.exit_code == ExitCode.OK, bulk.output
    assert store.get(parked)["state"] == "retrying"
    assert store.get(dead)["state"] == "dead"

    refused = run("resume", retrying)
    assert refused.exit_code == ExitCode.USAGE
    assert "only dead or parked" in refused.stderr
    assert run("resume", "not-a-job").exit_code == ExitCode.NOT_FOUND


def test_retry_now_makes_a_waiting_job_due_now(store):
    job_id = make_job(store, JobState.RETRYING, delay_ms=3_600_000)
    before = store.index_score(store.keys.due, job_id)

    result = run("retry-now", job_id)

    assert result.exit_code == ExitCode.OK, result.output
    after = store.index_score(store.keys.due, job_id)
    assert before is not None and after is not None and after < before - 3_500_000
    dead = make_job(store, JobState.DEAD)
    assert run("retry-now", dead).exit_code == ExitCode.USAGE


# -- purge ----------------------------------------------------------------------------------


def test_purge_deletes_only_ended_records_of_the_state_and_their_index_entries(store):
    dead = [make_job(store, JobState.DEAD) for _ in range(3)]
    killed = make_job(store, JobState.KILLED)
    live = make_job(store, JobState.RETRYING)

    kept = run("purge", "--state", "dead", "--older-than", "1h", "--yes")
    assert kept.exit_code == ExitCode.OK, kept.output
    assert "purged 0 dead records" in kept.stdout
    assert all(store.get(j) for j in dead)

    result = run("purge", "--state", "dead", "--older-than", "0s", "--yes")

    assert result.exit_code == ExitCode.OK, result.output
    assert "purged 3 dead records" in result.stdout
    assert all(store.get(j) is None for j in dead)
    assert store.index_size(store.keys.ended(JobState.DEAD)) == 0
    assert store.get(killed) is not None and store.get(live) is not None
    assert run("purge", "--state", "retrying", "--older-than", "0s", "--yes").exit_code == 2
    assert run("purge", "--state", "dead", "--older-than", "soon", "--yes").exit_code == 2
    assert run("purge", "--state", "killed", "--older-than", "0s", input="").exit_code == 2
    assert store.get(killed) is not None


# -- watch ----------------------------------------------------------------------------------


def test_watch_refreshes_a_table_of_stuck_and_retrying_jobs(store):
    stuck = make_job(store, JobState.RETRYING)
    waiting = make_job(store, JobState.RETRYING)
    store.mark_stuck(stuck, 0)

    result = run("watch", "--interval", "0.1", "--iterations", "2")

    assert result.exit_code == ExitCode.OK, result.output
    assert result.stdout.count("waiting 2") == 2  # two refreshes
    first_frame = result.stdout.split("\n\n")[0]
    assert first_frame.index(stuck) < first_frame.index(waiting)  # stuck first
    assert "retrying, stuck" in first_frame

    as_json = run("watch", "--interval", "0.1", "--iterations", "2", "--json")
    frames = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert len(frames) == 2 and frames[0]["counts"]["stuck"] == 1


# -- on a terminal: 80 and 120 columns ----------------------------------------------------------

LONG_ERROR = "ConnectionError: partner API for globex unreachable after 30s (connect timeout)"


def terminal(columns: int) -> dict[str, str]:
    """The environment of a terminal ``columns`` wide (rich reads both at each print)."""
    return {"COLUMNS": str(columns), "TTY_COMPATIBLE": "1"}


def operator_jobs(store: Store) -> dict[str, tuple[str, int]]:
    """Jobs as an operator meets them: job id -> (state, attempts)."""
    made = {}
    for state, failures in ((JobState.RETRYING, 7), (JobState.RETRYING, 3),
                            (JobState.PARKED, 2), (JobState.RUNNING, 1)):  # fmt: skip
        job_id = make_job(store, state, task="myapp.jobs.sync_account", failures=failures,
                          policy="myapp.jobs.sync_account", error=LONG_ERROR)  # fmt: skip
        made[job_id] = (state.value, failures)
    return made


def rows_by_id(lines: list[str], made: dict[str, tuple[str, int]]) -> dict[str, list[str]]:
    """Each job's row, found by the id (or id prefix) it starts with."""
    rows = {}
    for line in lines:
        shown = line.split(" ")[0]
        owners = [job_id for job_id in made if len(shown) >= 4 and job_id.startswith(shown)]
        if owners:
            assert len(owners) == 1, (shown, owners)
            rows[owners[0]] = line.split()
    return rows


@pytest.mark.parametrize("columns", [80, 120])
def test_list_on_a_terminal_fits_and_shows_ids_kill_accepts_states_and_attempts(store, columns):
    made = operator_jobs(store)

    result = run("list", env=terminal(columns))

    assert result.exit_code == ExitCode.OK, result.output
    lines = plain(result.stdout).splitlines()
    assert all(len(line) <= columns for line in lines), lines
    rows = rows_by_id(lines, made)
    assert sorted(rows) == sorted(made)
    for job_id, (state, attempts) in made.items():
        assert state in rows[job_id] and str(attempts) in rows[job_id], rows[job_id]
    assert any(line.endswith("…") for line in lines)  # the last error is what is cut
    # The id as printed is what an operator pastes: kill really kills that job.
    victim = next(job_id for job_id, (state, _) in made.items() if state == "retrying")
    killed = run("kill", rows[victim][0])
    assert killed.exit_code == ExitCode.OK, killed.output
    assert store.get(victim)["state"] == "killed"
    assert [j for j in made if store.get(j)["state"] == "killed"] == [victim]


@pytest.mark.parametrize("columns", [80, 120])
def test_list_in_a_real_terminal_shows_ids_kill_accepts(store, redis_server, columns):
    made = operator_jobs(store)

    code, screen = run_retryctl_in_pty(redis_server.url, columns, "list")

    assert code == ExitCode.OK, screen
    lines = screen.splitlines()
    assert all(len(line) <= columns for line in lines), lines
    rows = rows_by_id(lines, made)
    assert sorted(rows) == sorted(made)
    for job_id, (state, attempts) in made.items():
        assert state in rows[job_id] and str(attempts) in rows[job_id], rows[job_id]
    some = next(iter(made))
    code, screen = run_retryctl_in_pty(redis_server.url, columns, "kill", rows[some][0])
    assert code == ExitCode.OK, screen
    assert store.get(some)["state"] == "killed"


def test_list_wide_and_into_a_pipe_cuts_nothing(store):
    made = operator_jobs(store)
    for args, env in ((("list", "--wide"), terminal(80)), (("list", "-o", "wide"), terminal(80)),
                      (("list",), None)):  # fmt: skip
        out = plain(run(*args, env=env).stdout)
        for job_id in made:
            row = next(line for line in out.splitlines() if line.startswith(job_id))
            assert "myapp.jobs.sync_account" in row and "(UTC)" in out.splitlines()[0]
        assert out.count(LONG_ERROR) == 3  # whole, for every job that failed


@pytest.mark.parametrize("columns", [80, 120])
def test_watch_on_a_terminal_shows_ids_states_and_attempts(store, columns):
    made = operator_jobs(store)
    store.mark_stuck(next(iter(made)), 0)

    result = run("watch", "--iterations", "1", env=terminal(columns))

    assert result.exit_code == ExitCode.OK, result.output
    lines = plain(result.stdout).splitlines()
    assert all(len(line) <= columns for line in lines), lines
    rows = rows_by_id(lines, made)
    waiting = {j: v for j, v in made.items() if v[0] == "retrying"}
    assert sorted(rows) == sorted(waiting)  # watch shows the stuck and retrying jobs
    for job_id, (state, attempts) in waiting.items():
        assert state in " ".join(rows[job_id]) and str(attempts) in rows[job_id]
    assert "retrying, stuck" in " ".join(rows[next(iter(made))])


@pytest.mark.parametrize("columns", [80, 120])
def test_show_on_a_terminal_shows_the_full_id_state_and_attempts(store, columns):
    made = operator_jobs(store)
    job_id = next(iter(made))

    out = plain(run("show", job_id[:8], env=terminal(columns)).stdout).splitlines()

    assert out[0].split() == ["job", job_id]
    assert next(line.split() for line in out if line.startswith("state")) == ["state", "retrying"]
    assert next(line for line in out if line.startswith("attempts")).split()[1] == "7"


def test_a_bulk_action_previews_the_jobs_it_matched_as_list_does(store):
    made = operator_jobs(store)

    result = run("kill", "--state", "retrying", input="n\n", env=terminal(80))

    assert result.exit_code == ExitCode.OK, result.output
    preview = plain(result.stderr).splitlines()
    rows = rows_by_id(preview, made)
    assert sorted(rows) == sorted(j for j, v in made.items() if v[0] == "retrying")
    assert all(len(line) <= 80 for line in preview[: len(rows) + 1])
    assert "kill 2 jobs (state=retrying)?" in result.stderr and "nothing done" in result.stderr
    assert all(store.get(j)["state"] != "killed" for j in made)


# -- id prefixes -------------------------------------------------------------------------------


def test_a_unique_id_prefix_names_a_job_in_every_command(store):
    a = make_job(store, JobState.RETRYING, job_id="7997a1cb-3efc-4c30-954e-000000000001")
    b = make_job(store, JobState.RETRYING, job_id="7997b2cb-3efc-4c30-954e-000000000002")
    c = make_job(store, JobState.DEAD, job_id="ed92c3cb-3efc-4c30-954e-000000000003")

    shown = run("show", "7997a")
    assert shown.exit_code == ExitCode.OK, shown.output
    assert shown.stdout.splitlines()[0].split() == ["job", a]
    assert run("retry-now", "7997b").stdout == f"{b}: due now\n"

    killed = run("kill", "7997a", "ed92")
    assert killed.exit_code == ExitCode.OK, killed.output
    assert killed.stdout.splitlines() == [f"killed {a} (was retrying)", f"killed {c} (was dead)"]
    assert store.get(a)["state"] == "killed" and store.get(c)["state"] == "killed"
    assert store.get(b)["state"] == "retrying"


def test_a_prefix_of_several_jobs_exits_2_naming_them_and_does_nothing(store):
    a = make_job(store, JobState.RETRYING, job_id="7997a1cb-0000-4000-8000-000000000001")
    b = make_job(store, JobState.PARKED, job_id="7997b2cb-0000-4000-8000-000000000002")
    other = make_job(store, JobState.RETRYING)

    for args in (("show", "7997"), ("kill", other, "7997"), ("resume", "7997")):
        result = run(*args)
        assert result.exit_code == ExitCode.USAGE, (args, result.output)
        assert f"7997 is the start of the ids of several jobs: {a}, {b}" in result.stderr
    assert store.get(other)["state"] == "retrying"  # refused before acting on any


def test_a_full_id_wins_over_longer_ids_it_starts_and_short_prefixes_are_not_matched(store):
    short = make_job(store, JobState.RETRYING, job_id="job-1")
    make_job(store, JobState.RETRYING, job_id="job-10")
    assert run_json("show", "job-1")["job"]["id"] == short
    too_short = run("show", "job")
    assert too_short.exit_code == ExitCode.NOT_FOUND
    assert "an id prefix needs at least 4 characters" in too_short.stderr
    assert run("show", "zzzz").exit_code == ExitCode.NOT_FOUND


# -- exit codes and the console script -------------------------------------------------------


def test_a_malformed_job_id_is_refused_before_redis_is_touched(store):
    url = f"redis://127.0.0.1:{closed_port()}/0"
    for command in ("show", "kill", "resume", "retry-now"):
        result = run("--redis-url", url, command, "bad id; rm -rf")
        assert result.exit_code == ExitCode.USAGE, (command, result.output)
        assert "is not a job id" in result.stderr


def test_unreachable_redis_exits_3_naming_the_url_with_the_password_hidden(store):
    url = f"redis://:hunter2@127.0.0.1:{closed_port()}/0"
    for args in (("list",), ("show", "some-job"), ("kill", "some-job"), ("watch",)):
        result = run("--redis-url", url, *args)
        assert result.exit_code == ExitCode.REDIS_UNREACHABLE, (args, result.output)
        assert "redis://:***@127.0.0.1" in result.stderr
        assert "hunter2" not in result.output


def test_an_invalid_durable_setting_exits_2_with_its_message(store):
    result = run("list", env={"DURABLE_LEASE_SECONDS": "-1"})
    assert result.exit_code == ExitCode.USAGE
    assert "DURABLE_LEASE_SECONDS" in result.stderr
    typo = run("list", env={"DURABLE_LEASE_SECOND": "3"})
    assert typo.exit_code == ExitCode.USAGE and "did you mean" in typo.stderr


def test_the_console_script_lists_kills_and_refuses_bulk_without_stdin(store, redis_server):
    job_id = make_job(store, JobState.RETRYING)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
    env["DURABLE_REDIS_URL"] = redis_server.url
    retryctl = os.path.join(os.path.dirname(sys.executable), "retryctl")

    def console_script(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [retryctl, *args], env={**env, **extra}, cwd=ROOT, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=60,
        )  # fmt: skip

    listed = console_script("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [j["id"] for j in json.loads(listed.stdout)] == [job_id]
    bulk = console_script("kill", "--state", "retrying")
    assert bulk.returncode == ExitCode.USAGE and "--yes" in bulk.stderr
    # A terminal (forced) gets the live view, refreshed in place by rich.live.
    watched = console_script("watch", "--iterations", "1", FORCE_COLOR="1", COLUMNS="200")
    assert watched.returncode == 0, watched.stderr
    assert job_id in watched.stdout and "\x1b[" in watched.stdout
    killed = console_script("kill", job_id)
    assert killed.returncode == 0, killed.stderr
    assert store.get(job_id)["state"] == "killed"
    missing = console_script("show", str(uuid.uuid4()))
    assert missing.returncode == ExitCode.NOT_FOUND


def test_kill_stops_a_job_a_real_worker_keeps_retrying(store, redis_client, start_worker):
    start_worker()
    job_id = jobs.always_fails.delay().id
    wait_for(lambda: job_id in run("list").stdout, 30, "the failing job to be listed")

    result = run("kill", job_id, "--reason", "operator gave up")

    assert result.exit_code == ExitCode.OK, result.output
    runs = sum(jobs.body_runs(redis_client, job_id).values())
    record = control.status(job_id)
    assert record is not None and record.state is JobState.KILLED
    # Well past several retry delays (0.1-0.2 s), no attempt ran again.
    time.sleep(1.5)
    assert sum(jobs.body_runs(redis_client, job_id).values()) <= runs + 1  # one may be mid-run
    assert run_json("list") == []
