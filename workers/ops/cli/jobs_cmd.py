"""retryctl list / show / kill / resume / retry-now / purge / watch: the jobs in Redis.

Every command reads the indexes the store keeps (never a scan of keys), so
it answers as fast with 100,000 jobs as with ten. Job ids are checked before
anything touches Redis; an unreachable Redis exits 3 naming the URL tried.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.text import Text

from policies import PolicyError, RetryPolicy, format_duration, load_catalog, parse_duration
from policies.rates import format_rate
from workers.core.records import JobRecord, JobState, ms_to_datetime
from workers.core.refusals import memory_text, memory_use
from workers.core.store import Store
from workers.ops.cli.columns import job_lines
from workers.ops.cli.common import (
    Connection,
    ExitCode,
    broadcast_app,
    connection,
    console,
    err_console,
    fail,
    print_json,
    redis_errors,
    registered_from,
    registered_policy,
)
from workers.ops.cli.render import (
    history_entries,
    history_json,
    history_lines,
    job_json,
    since,
    until,
    utc,
)
from workers.ops.control import (
    LIVE_STATES,
    MIN_PREFIX,
    AmbiguousJobId,
    Control,
    InvalidJobId,
    validate_job_id,
)

MAX_LIST = 100_000
BULK_MAX = 100_000
"""Bulk actions act on at most this many jobs per run; run again for more."""

DEFAULT_KILL_REASON = "killed by an operator (retryctl)"

ALL_STATES = [state.value for state in JobState]
ENDED_STATES = [JobState.SUCCEEDED.value, JobState.DEAD.value, JobState.KILLED.value]

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
wide_option = click.option(
    "--wide", is_flag=True,
    help="Every column, whole, whatever the terminal's width (as output that is not a terminal).",
)  # fmt: skip
output_option = click.option(
    "-o", "--output", type=click.Choice(["wide", "json"]), default=None,
    help="-o wide: as --wide; -o json: as --json.",
)  # fmt: skip
PREVIEW_ROWS = 20
"""A bulk action shows this many of the jobs it matched before asking."""
yes_option = click.option(
    "--yes", "-y", is_flag=True, help="Act on every job the filters match without asking."
)


def policy_filter(help_text: str) -> Callable[..., Any]:
    return click.option("--policy", default=None, metavar="NAME", help=help_text)


task_filter = click.option("--task", default=None, metavar="NAME", help="Only jobs of this task.")


# -- shared pieces -------------------------------------------------------------------


def _table_width(out: Console, wide: bool) -> int | None:
    """The width a job table must fit: the terminal's; None (never cut) for a pipe or --wide."""
    return out.width if out.is_terminal and not wide else None


def _redis_now(store: Store) -> datetime:
    """Now by Redis' clock, the clock every time in the store was written with."""
    now = ms_to_datetime(store.now_ms())
    assert now is not None
    return now


def _check_ids(job_ids: Sequence[str]) -> list[str]:
    """Refuse anything that is not a plausible job id, before Redis is touched."""
    for job_id in job_ids:
        try:
            validate_job_id(job_id)
        except InvalidJobId as error:
            fail(str(error))
    return list(dict.fromkeys(job_ids))


def _resolve_ids(conn: Connection, job_ids: Sequence[str]) -> list[str]:
    """The jobs named by full ids or unique prefixes; exit 2 before acting if one is ambiguous."""
    checked = _check_ids(job_ids)
    with redis_errors(conn):
        control = conn.control
        resolved = []
        for job_id in checked:
            try:
                resolved.append(control.resolve(job_id))
            except AmbiguousJobId as error:
                fail(str(error))
    return list(dict.fromkeys(resolved))


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    try:
        answer = click.confirm(question, default=False, err=True)
    except click.Abort:
        fail("not confirmed (no answer on stdin); pass --yes to act without asking")
    if not answer:
        click.echo("nothing done", err=True)
        raise SystemExit(int(ExitCode.OK))


def _describe(state: str | None, policy: str | None, task: str | None) -> str:
    parts = [f"{name}={value}" for name, value in
             (("state", state), ("policy", policy), ("task", task)) if value]  # fmt: skip
    return ", ".join(parts)


def _targets(
    conn: Connection,
    job_ids: Sequence[str],
    states: Sequence[JobState],
    state: str | None,
    policy: str | None,
    task: str | None,
    verb: str,
    yes: bool,
) -> list[str]:
    """The ids an action applies to: those given, or those the filters match (confirmed)."""
    filtered = bool(state or policy or task)
    if job_ids and filtered:
        fail(f"give job ids or filters (--state, --policy, --task) to {verb}, not both")
    if job_ids:
        return _resolve_ids(conn, job_ids)
    if not filtered:
        fail(f"name the jobs to {verb}: job ids, or filters (--state, --policy, --task)")
    chosen = [JobState(state)] if state else list(states)
    matched: dict[str, JobRecord] = {}
    with redis_errors(conn):
        for each in chosen:
            for record in conn.control.list_jobs(
                state=each, policy=policy, task=task, limit=BULK_MAX
            ):
                matched.setdefault(record.id, record)
    ids = list(matched)[:BULK_MAX]
    what = _describe(state, policy, task)
    if not ids:
        click.echo(f"no jobs match ({what}); nothing to {verb}", err=True)
        return []
    noun = "job" if len(ids) == 1 else "jobs"
    if not yes:
        _preview(conn, [matched[job_id] for job_id in ids])
    _confirm(f"{verb} {len(ids)} {noun} ({what})?", yes)
    return ids


def _preview(conn: Connection, records: Sequence[JobRecord]) -> None:
    """Before asking, the first jobs a bulk action matched, on stderr, as list shows them."""
    shown = records[:PREVIEW_ROWS]
    with redis_errors(conn):
        store = conn.store
        stuck_ids = frozenset(store.in_index(store.keys.stuck, [r.id for r in shown]))
        now = _redis_now(store)
    lines = job_lines(shown, now, stuck_ids, _table_width(err_console, wide=False))
    if len(records) > len(shown):
        lines.append(f"... and {len(records) - len(shown)} more")
    click.echo("\n".join(lines), err=True)


class Outcomes:
    """What an action did to each job, printed one line each; the exit code follows."""

    def __init__(self) -> None:
        self.code = ExitCode.OK

    def done(self, line: str) -> None:
        click.echo(line)

    def not_found(self, line: str) -> None:
        click.echo(line, err=True)
        self.code = max(self.code, ExitCode.NOT_FOUND)

    def refused(self, line: str) -> None:
        click.echo(line, err=True)
        self.code = max(self.code, ExitCode.USAGE)

    def exit(self) -> None:
        if self.code != ExitCode.OK:
            raise SystemExit(int(self.code))


def _not_found(job_id: str) -> str:
    short = (f"; an id prefix needs at least {MIN_PREFIX} characters"
             if len(job_id) < MIN_PREFIX else "")  # fmt: skip
    return (
        f"job {job_id}: not found (it has not started yet, its record expired, or "
        f"--redis-url/--key-prefix point elsewhere{short})"
    )


# -- list ------------------------------------------------------------------------------


@click.command("list")
@click.option(
    "--state", type=click.Choice(ALL_STATES), default=None,
    help="Only jobs in this state [default: running, retrying, queued, parked].",
)  # fmt: skip
@policy_filter("Only jobs of this policy.")
@task_filter
@click.option("--stuck", is_flag=True, help="Only jobs failing longer than their alert_after.")
@click.option("--limit", type=click.IntRange(1, MAX_LIST), default=50, show_default=True,
              help="Most jobs to show.")  # fmt: skip
@wide_option
@output_option
@json_option
def list_jobs(
    state: str | None, policy: str | None, task: str | None, stuck: bool, limit: int,
    wide: bool, output: str | None, as_json: bool,
) -> None:  # fmt: skip
    """List jobs, one line each: id, state, attempts, next attempt, last error...

    Waiting jobs come soonest due first. Reads the store's indexes, never a scan of keys.
    On a terminal the table fits its width: ids (or unique prefixes, which every
    command takes), states and attempts are never cut, the last error is; columns
    that do not fit are left out (--wide shows them all).
    """
    wide, as_json = wide or output == "wide", as_json or output == "json"
    conn = connection()
    unread: set[int] = set()  # shards on a Cluster master that did not answer
    with redis_errors(conn):
        store = conn.store
        records = conn.control.list_jobs(
            state=JobState(state) if state else None, policy=policy, task=task, limit=limit,
            stuck=stuck, unread=unread,
        )  # fmt: skip
        stuck_ids = store.in_index(store.keys.stuck, [r.id for r in records])
        now = _redis_now(store)
    if as_json:
        print_json([{**job_json(r, now), "stuck": r.id in stuck_ids} for r in records])
    elif records:
        click.echo("\n".join(job_lines(records, now, frozenset(stuck_ids),
                                        _table_width(console, wide))))  # fmt: skip
    elif not unread:
        click.echo("no jobs match")
    if unread:
        # What was read is shown; the exit code keeps a script from taking it for all.
        tags = ", ".join(store.layout.shard(n).tag for n in sorted(unread))
        click.echo(f"retryctl: warning: shards {tags} did not answer (a Redis Cluster "
                   "master is down, with no replica promoted yet): their jobs are not "
                   "listed", err=True)  # fmt: skip
        raise SystemExit(int(ExitCode.REDIS_UNREACHABLE))


# -- show ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyView:
    """The policy show explains: where it was found, or why none was."""

    policy: RetryPolicy | None
    source: str | None = None
    note: str | None = None


def _policy_of(conn: Connection, name: str) -> PolicyView:
    """The job's policy from the catalogue retryctl reads, else from the workers' registry."""
    if not name:
        return PolicyView(None, note="the job has no policy recorded (a kill recorded before "
                                     "it started)")  # fmt: skip
    try:
        catalog = load_catalog(conn.settings.policy_file)
        unreadable = None
    except PolicyError as error:
        catalog, unreadable = None, str(error)
    try:
        registered = registered_policy(conn, name)
    except PolicyError as error:
        registered, unreadable = None, str(error)
    if catalog is not None and name in catalog:
        view = PolicyView(catalog.get(name), source=catalog.source(name))
        if registered is not None and registered.policy != view.policy:
            return PolicyView(view.policy, view.source, note=(
                "the workers registered other values under this name "
                f"({registered_from(registered)}): the policy file retryctl reads is not "
                "the workers'; theirs decide"))  # fmt: skip
        return view
    if registered is not None:
        return PolicyView(registered.policy, source=registered_from(registered))
    return PolicyView(None, note=(
        f"policy {name} is in neither the catalogue retryctl reads (built-ins and "
        "DURABLE_POLICY_FILE) nor the policies workers registered in Redis when they "
        "started; a worker that serves it registers it when it starts"
        + (f" ({unreadable})" if unreadable else "")))  # fmt: skip


def explain(
    record: JobRecord,
    fields: dict[str, str],
    now: datetime,
    policy: RetryPolicy | None,
    lease_end: datetime | None,
    stuck_at: datetime | None,
) -> list[str]:
    """Why the job will or will not run again, in sentences."""
    state, attempt, job = record.state, record.attempts, record.id
    lines: list[str] = []
    if fields.get("paused_at") and state in (JobState.RETRYING, JobState.QUEUED):
        lines.append(
            f"it is held back by a pause since {since(ms_to_datetime(fields['paused_at']), now)}"
            f" (policy {record.policy} or task {record.task}: `retryctl pause --list`); it "
            "runs after `retryctl unpause`, and the time held does not count against its "
            "windows."
        )
        return lines
    if state is JobState.RUNNING:
        lines.append(
            f"it is running: attempt {attempt} on {record.owner or 'a worker'}; its lease ends "
            f"{until(lease_end, now)}. If that worker dies, a sweeper judges the attempt as "
            "an interruption once the lease ends."
        )
    elif record.waits_for_budget:
        budget = policy.retry_budget(record.last_event) if policy else None
        fleet = f" ({format_rate(budget.rate)} fleet-wide)" if budget is not None else ""
        lines.append(
            f"held by: budget. It waits for its policy's retry budget (max_retry_rate{fleet}): "
            f"attempt {attempt + 1} starts at its slot, {until(record.next_attempt_at, now)}; "
            "the wait counted no attempt."
        )
    elif state is JobState.RETRYING:
        due = until(record.next_attempt_at, now)
        lines.append(f"it runs again: attempt {attempt + 1} is due {due}.")
        if record.next_attempt_at is not None and record.next_attempt_at < now:
            lines.append("it is overdue: a sweeper publishes it at its next pass (or its "
                         "countdown message is about to run).")  # fmt: skip
    elif state is JobState.QUEUED:
        lines.append(f"it runs again: attempt {attempt + 1} has been published and waits "
                     "for a worker.")  # fmt: skip
    elif state is JobState.PARKED:
        cap = policy.max_retrying if policy else None
        room = f"allows {cap} jobs" if cap is not None else "caps the jobs"
        lines.append(
            f"it waits for room: its policy {room} waiting for a retry at once. A sweeper "
            f"resumes it when one leaves; `retryctl resume {job}` resumes it now."
        )
    elif state is JobState.DEAD:
        lines.append(f"it will not run again: it gave up. {record.reason or ''}".rstrip())
        if "args" in fields:
            lines.append(f"`retryctl resume {job}` brings it back now with a new window "
                         "(the attempt count is kept).")  # fmt: skip
    elif state is JobState.KILLED:
        lines.append(f"it will never run again: killed ({record.killed_reason or 'no reason'}).")
    elif state is JobState.SUCCEEDED:
        lines.append(f"it will not run again: it succeeded at attempt {attempt}.")
    # Waiting jobs keep no reason (memory); a parked one keeps the decision that parked it.
    if record.reason and state is JobState.PARKED:
        lines.append(f"last decision: {record.reason}")
    if policy is not None and not state.is_terminal and record.first_failure_at is not None:
        first = record.first_failure_at
        if policy.duration is not None:
            end = first + timedelta(seconds=policy.duration)
            lines.append(f"window: it gives up if still failing at {utc(end)} UTC "
                         f"({format_duration(policy.duration)} after the streak's first "
                         "failure).")  # fmt: skip
        else:
            lines.append("window: off; it retries until it succeeds or an operator kills it.")
        if policy.max_attempts is not None:
            lines.append(f"attempts: {record.streak_attempts} of {policy.max_attempts} "
                         "in this streak.")  # fmt: skip
        if policy.events:
            lines.append("(per-event overrides of the policy may end it sooner.)")
        if stuck_at is None and policy.alert_after is not None:
            at = first + timedelta(seconds=policy.alert_after)
            lines.append(f"alert: reported stuck at its first failure after {utc(at)} UTC.")
    if stuck_at is not None:
        alert_after = policy.alert_after if policy else None
        alert = format_duration(alert_after) if alert_after is not None else "its alert_after"
        lines.append(f"stuck: failing longer than {alert}; reported {since(stuck_at, now)}.")
    return lines


@click.command("show")
@click.argument("job_id")
@json_option
def show(job_id: str, as_json: bool) -> None:
    """Everything the store knows about JOB_ID, its policy, and why it will or won't run again.

    JOB_ID is a job's id or a unique prefix of it (at least 4 characters).
    """
    conn = connection()
    [job_id] = _resolve_ids(conn, [job_id])
    with redis_errors(conn):
        store = conn.store
        fields = store.get(job_id)
        if fields is None:
            fail(_not_found(job_id), ExitCode.NOT_FOUND)
        record = JobRecord.from_fields(job_id, fields)
        now = _redis_now(store)
        lease = store.index_score(store.keys.leases, job_id)
        stuck = store.index_score(store.keys.stuck, job_id)
        expires = store.expires_at_ms(job_id)
        history = history_entries(store.history(job_id))
    lease_end = ms_to_datetime(int(lease)) if lease is not None else None
    stuck_at = ms_to_datetime(int(stuck)) if stuck is not None else None
    expires_at = ms_to_datetime(expires)
    view = _policy_of(conn, record.policy)
    policy = view.policy
    why = explain(record, fields, now, policy, lease_end, stuck_at)
    if as_json:
        print_json({
            "job": job_json(record, now),
            "fields": fields,
            "lease_ends_at": lease_end.isoformat() if lease_end else None,
            "stuck_since": stuck_at.isoformat() if stuck_at else None,
            "record_expires_at": expires_at.isoformat() if expires_at else None,
            "policy": policy.effective() if policy else None,
            "policy_source": view.source,
            "policy_note": view.note,
            "why": why,
            "history": history_json(history),
        })  # fmt: skip
        return
    _print_show(record, fields, now, lease_end, expires_at, view, why)
    click.echo("")
    if history:
        click.echo(f"last {len(history)} attempts (oldest first):")
        for line in history_lines(history):
            click.echo(f"  {line}")
    else:
        click.echo("history: none kept (DURABLE_HISTORY_ATTEMPTS=0, or a record older than it)")


def _print_show(
    record: JobRecord,
    fields: dict[str, str],
    now: datetime,
    lease_end: datetime | None,
    expires_at: datetime | None,
    view: PolicyView,
    why: list[str],
) -> None:
    failures = ", ".join(f"{event.value} {n}" for event, n in record.failures.items()) or "-"
    rows = [
        ("job", record.id),
        ("task", record.task or "-"),
        ("policy", record.policy or "-"),
        ("state", record.state.value),
        ("attempts", f"{record.attempts} ({record.streak_attempts} in this failure streak)"),
        ("created", since(record.created_at, now)),
        ("updated", since(record.updated_at, now)),
        ("failing since", since(record.first_failure_at, now)),
        ("last failure", since(record.last_failure_at, now)
         + (f" [{record.last_event.value}]" if record.last_event else "")),
        ("failures", failures),
        ("last error", record.last_error or "-"),
        ("next attempt", until(record.next_attempt_at, now)),
        ("owner", record.owner or "-"),
        ("lease ends", until(lease_end, now)),
        ("queue", record.queue or "-"),
        ("args", fields.get("args", "-")),
        ("kwargs", fields.get("kwargs", "-")),
        ("checkpoint", f"{len(fields['checkpoint'].encode())} bytes"
         if "checkpoint" in fields else "-"),
        ("killed reason", record.killed_reason or "-"),
        ("record expires", until(expires_at, now)),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name.ljust(width)}  {value}")
    click.echo("\nwhy:")
    for line in why:
        click.echo(f"  {line}")
    click.echo("")
    policy = view.policy
    if policy is None:
        click.echo(f"policy: {view.note}")
        return
    click.echo(f"policy {policy.name} (effective values; {view.source}):")
    if view.note:
        click.echo(f"  note: {view.note}")
    import yaml  # here: only this command writes YAML (see policies.catalog)

    text = yaml.safe_dump(policy.effective(), sort_keys=False, default_flow_style=False)
    for line in text.rstrip().splitlines():
        click.echo(f"  {line}")


# -- actions ---------------------------------------------------------------------------


def _jobs_app(app_module: str) -> Any:
    """The Celery app ``-A MODULE`` names, found as ``celery -A`` finds it (exit 2 if not)."""
    from celery.app.utils import find_app  # only here: other commands start without Celery

    try:
        return find_app(app_module)
    except Exception as error:
        fail(f"-A {app_module}: cannot load a Celery app from it: {error}")


def _revoke(conn: Connection, job_ids: Sequence[str], app: Any) -> None:
    """Tell the workers to stop running attempts now; the kill is already in Redis.

    The revoke goes out on the broker of ``app`` (the jobs' app, ``-A``), else
    on a bare app of DURABLE_BROKER_URL / DURABLE_REDIS_URL.
    """
    if not job_ids:
        return
    try:
        app = app if app is not None else broadcast_app(conn.settings)
        with app.connection_for_write() as broker:
            app.control.revoke(list(job_ids), terminate=True, connection=broker)
    except Exception as error:
        err_console.print(
            Text(f"retryctl: warning: the kill is recorded, but the revoke that stops a "
                 f"running attempt now was not sent: {error}")
        )  # fmt: skip


@click.command("kill")
@click.argument("job_ids", nargs=-1)
@click.option("--reason", default=DEFAULT_KILL_REASON, show_default=True,
              help="Why: kept in the record.")  # fmt: skip
@click.option("--force", is_flag=True,
              help="Record the kill of a job the store has never seen (enqueued, never "
              "started), so its message is dropped when it comes.")  # fmt: skip
@click.option("-A", "--app", "app_module", metavar="MODULE", default=None,
              help="The jobs' Celery app, as for celery -A: running attempts are revoked on "
              "its broker [default: a bare app on DURABLE_BROKER_URL, else "
              "DURABLE_REDIS_URL].")  # fmt: skip
@click.option(
    "--state", type=click.Choice(["running", "retrying", "queued", "parked", "dead"]),
    default=None, help="Kill every job in this state (with --policy/--task: and).",
)  # fmt: skip
@policy_filter("Kill every live job of this policy.")
@task_filter
@yes_option
def kill(
    job_ids: tuple[str, ...], reason: str, force: bool, app_module: str | None,
    state: str | None, policy: str | None, task: str | None, yes: bool,
) -> None:  # fmt: skip
    """Stop jobs for good: no delivery ever runs them again, and running attempts are revoked.

    Name jobs by id (or a unique prefix of at least 4 characters), or by
    filters (asks first; --yes to skip). Exit 1 if a job is not found.
    """
    conn = connection()
    jobs_app = _jobs_app(app_module) if app_module else None
    ids = _targets(conn, job_ids, LIVE_STATES, state, policy, task, "kill", yes)
    outcomes = Outcomes()
    killed: list[str] = []
    with redis_errors(conn):
        for job_id in ids:
            result = conn.control.kill(job_id, reason, record_unknown=force, revoke=False)
            if result.done:
                killed.append(job_id)
                was = result.previous_state
                outcomes.done(f"killed {job_id}" + (
                    " (not seen before: its message is dropped when it comes)"
                    if was == "unknown" else f" (was {was})"))  # fmt: skip
            elif result.outcome == "unknown":
                outcomes.not_found(
                    f"{_not_found(job_id)}. If it was enqueued but never started, "
                    f"`retryctl kill --force {job_id}` records the kill so it never runs."
                )
            elif result.previous_state == JobState.KILLED.value:
                outcomes.done(f"{job_id} was already killed")
            else:
                outcomes.refused(f"job {job_id}: already {result.previous_state}; nothing to kill")
    _revoke(conn, killed, jobs_app)
    outcomes.exit()


@click.command("resume")
@click.argument("job_ids", nargs=-1)
@click.option("--state", type=click.Choice(["dead", "parked"]), default=None,
              help="Resume every job in this state.")  # fmt: skip
@policy_filter("Resume every dead or parked job of this policy.")
@task_filter
@yes_option
def resume(
    job_ids: tuple[str, ...], state: str | None, policy: str | None, task: str | None, yes: bool
) -> None:
    """Bring dead or parked jobs back to retrying, now.

    The attempt count is kept; a new failure streak starts (new window, new
    attempt budget). Name jobs by id (or a unique prefix of at least 4
    characters), or by filters (asks first; --yes to skip).
    """
    conn = connection()
    states = (JobState.DEAD, JobState.PARKED)
    ids = _targets(conn, job_ids, states, state, policy, task, "resume", yes)
    outcomes = Outcomes()
    with redis_errors(conn):
        for job_id in ids:
            result = conn.control.resume(job_id)
            if result.done:
                outcomes.done(f"resumed {job_id} (was {result.previous_state})")
            elif result.outcome == "unknown":
                outcomes.not_found(_not_found(job_id))
            else:
                outcomes.refused(
                    f"job {job_id}: {result.previous_state or result.outcome}; only dead or "
                    "parked jobs with their arguments kept can be resumed"
                )
    outcomes.exit()


@click.command("retry-now")
@click.argument("job_ids", nargs=-1)
@click.option("--state", type=click.Choice(["retrying", "queued"]), default=None,
              help="Every waiting job in this state.")  # fmt: skip
@policy_filter("Every waiting job of this policy.")
@task_filter
@yes_option
def retry_now(
    job_ids: tuple[str, ...], state: str | None, policy: str | None, task: str | None, yes: bool
) -> None:
    """Skip the rest of waiting jobs' delay: the next sweep publishes them.

    Name jobs by id (or a unique prefix of at least 4 characters), or by
    filters (asks first; --yes to skip).
    """
    conn = connection()
    ids = _targets(conn, job_ids, (JobState.RETRYING,), state, policy, task, "retry now", yes)
    outcomes = Outcomes()
    with redis_errors(conn):
        for job_id in ids:
            result = conn.control.retry_now(job_id)
            if result.done:
                outcomes.done(f"{job_id}: due now")
            elif result.outcome == "unknown":
                outcomes.not_found(_not_found(job_id))
            else:
                outcomes.refused(
                    f"job {job_id}: {result.previous_state}; only waiting jobs (retrying "
                    "or queued) can be retried now"
                )
    outcomes.exit()


@click.command("purge")
@click.option("--state", type=click.Choice(ENDED_STATES), required=True,
              help="Ended records of this state.")  # fmt: skip
@click.option("--older-than", required=True, metavar="DURATION",
              help="That ended longer ago than this, e.g. 7d, 12h.")  # fmt: skip
@policy_filter("Only records of this policy.")
@task_filter
@yes_option
def purge(state: str, older_than: str, policy: str | None, task: str | None, yes: bool) -> None:
    """Delete ended records (succeeded, dead or killed) and their index entries.

    Records also expire on their own after DURABLE_RETENTION; purge frees them sooner.
    A purged job is forgotten: a late duplicate of its message would run as new.
    """
    try:
        age = parse_duration(older_than)
    except ValueError as error:
        fail(f"--older-than: {error}")
    if age is None:
        fail("--older-than: got 'off'; accepted: a duration like 7d or 12h")
    conn = connection()
    with redis_errors(conn):
        conn.store  # noqa: B018  (exit 3 before asking, if Redis is unreachable)
    what = _describe(state, policy, task)
    _confirm(f"purge {state} records that ended more than {format_duration(age)} ago ({what})?",
             yes)  # fmt: skip
    with redis_errors(conn):
        deleted = conn.control.purge(
            JobState(state), age, policy=policy, task=task
        )
    click.echo(f"purged {deleted} {state} record{'s' if deleted != 1 else ''}")


# -- watch ---------------------------------------------------------------------------


def _watch_frame(
    control: Control, limit: int, width: int | None
) -> tuple[dict[str, Any], list[str]]:
    store = control.store
    sizes = store.index_sizes()
    stuck = control.list_jobs(stuck=True, limit=limit)
    waiting = control.list_jobs(state=JobState.RETRYING, limit=limit)
    now = _redis_now(store)
    stuck_ids = frozenset(r.id for r in stuck)
    records = stuck + [r for r in waiting if r.id not in stuck_ids][: max(0, limit - len(stuck))]
    counts = {
        "running": sizes["leases"], "waiting": sizes["due"], "parked": sizes["parked"],
        "stuck": sizes["stuck"], "dead": sizes["dead"],
    }  # fmt: skip
    memory = memory_use(store.redis)
    data = {
        "at": now.isoformat(),
        "counts": counts,
        "memory": memory,
        "jobs": [{**job_json(r, now), "stuck": r.id in stuck_ids} for r in records],
    }
    header = [
        f"{utc(now)} UTC  " + "  ".join(f"{name} {n}" for name, n in counts.items())
        + f"  redis {memory_text(memory)}"
    ]  # fmt: skip
    if records:
        header.append(f"showing {len(records)}: stuck first, then soonest due")
    body = job_lines(records, now, stuck_ids, width) if records else ["no retrying or stuck jobs"]
    return data, [*header, *body]


@click.command("watch")
@click.option("--interval", type=click.FloatRange(0.1, 3600), default=2.0, show_default=True,
              help="Seconds between refreshes.")  # fmt: skip
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Most jobs shown.")  # fmt: skip
@click.option("--iterations", type=click.IntRange(0), default=0, show_default=True,
              help="Stop after this many refreshes (0: until Ctrl-C).")  # fmt: skip
@wide_option
@output_option
@json_option
def watch(
    interval: float, limit: int, iterations: int, wide: bool, output: str | None, as_json: bool
) -> None:
    """A live table of stuck and retrying jobs, refreshed in place.

    The table follows list's rules (fits the terminal; --wide: every column).
    To a pipe or a file (or with --json, one JSON document per line) each
    refresh is printed after the last.
    """
    wide, as_json = wide or output == "wide", as_json or output == "json"
    conn = connection()
    live = console.is_terminal and not as_json
    with redis_errors(conn):
        control = conn.control
        count = 0
        try:
            if live:
                with Live(console=console, auto_refresh=False) as screen:
                    while True:
                        # The width is read at each refresh: a resized pane gets its fit.
                        lines = _watch_frame(control, limit, _table_width(console, wide))[1]
                        screen.update(Text("\n".join(lines)), refresh=True)
                        count += 1
                        if iterations and count >= iterations:
                            break
                        time.sleep(interval)
                return
            while True:
                data, lines = _watch_frame(control, limit, _table_width(console, wide))
                if as_json:
                    click.echo(json.dumps(data, sort_keys=True))
                else:
                    click.echo("\n".join(lines) + "\n")
                count += 1
                if iterations and count >= iterations:
                    break
                time.sleep(interval)
        except KeyboardInterrupt:
            return


JOB_COMMANDS = (list_jobs, show, kill, resume, retry_now, purge, watch)
