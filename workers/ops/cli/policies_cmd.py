"""retryctl policies: list, show, check and simulate the retry policies."""

from __future__ import annotations

import builtins
import random

import click
from rich.markup import escape

from policies import (
    DEFAULT_WINDOW,
    Catalog,
    Event,
    Failure,
    GiveUp,
    PolicyError,
    RetryPolicy,
    format_duration,
    load_catalog,
    parse_duration,
    simulate,
)
from policies.catalog import builtin_policies
from policies.rates import describe_rate, format_rate
from policies.simulate import Step, budget_note
from workers.ops.cli.common import (
    connection,
    console,
    fail,
    print_json,
    print_rows,
    registered_from,
    registered_policy,
)

MAX_SIMULATED_ATTEMPTS = 100_000

DEFAULT_WINDOW_NOTE = (
    f"note: {format_duration(DEFAULT_WINDOW)} is the default retry window: a job still failing "
    f"{format_duration(DEFAULT_WINDOW)} after the first failure of its streak gives up. "
    "Set duration: off to retry until an operator stops it."
)

policy_file_option = click.option(
    "--policy-file",
    envvar="DURABLE_POLICY_FILE",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML file of policies on top of the built-ins [env DURABLE_POLICY_FILE].",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _catalog(policy_file: str | None) -> Catalog:
    try:
        return load_catalog(policy_file or None)
    except PolicyError as error:
        fail(str(error))


def _policy(catalog: Catalog, name: str) -> tuple[RetryPolicy, str]:
    """Policy NAME and where it came from: the catalogue, else the workers' registry in Redis.

    A catalogue name never touches Redis; any other is looked up among the
    policies workers registered when they started (inline policies of tasks,
    the workers' own policy file).
    """
    try:
        policy = catalog.get(name)
    except PolicyError as error:
        unknown = str(error)
    else:
        return policy, catalog.source(name)
    try:
        registered = registered_policy(connection(), name)
    except PolicyError as error:
        fail(f"{unknown}\nthe policy workers registered under {name!r} cannot be read: {error}")
    if registered is None:
        fail(f"{unknown}\nno worker registered a policy {name!r} in Redis either (workers "
             "register the policies they serve when they start)")  # fmt: skip
    return registered.policy, registered_from(registered)


def _count(value: int | None) -> str:
    return "off" if value is None else str(value)


@click.group()
def policies() -> None:
    """List, explain, check and try out retry policies."""


@policies.command("list")
@policy_file_option
@json_option
def list_policies(policy_file: str | None, as_json: bool) -> None:
    """One line per policy: name, source, window, attempt limit, events."""
    catalog = _catalog(policy_file)
    if as_json:
        summary = ("name", "description", "duration", "max_attempts", "on_events")
        print_json(
            [
                {
                    **{key: policy.effective()[key] for key in summary},
                    "source": catalog.source(policy.name),
                }
                for policy in catalog
            ]
        )
        return
    print_rows(
        ("NAME", "SOURCE", "DURATION", "MAX_ATTEMPTS", "ON_EVENTS"),
        [
            (
                policy.name,
                catalog.source(policy.name),
                format_duration(policy.duration),
                _count(policy.max_attempts),
                ",".join(policy.ordered_events()),
            )
            for policy in catalog
        ],
    )


def _event_line(policy: RetryPolicy, event: Event) -> str:
    """The limits one event is held to, saying which come from the event's own override."""
    override = policy.override(event)
    if override.sets("duration") and override.duration is None:
        window = "window off"
    elif override.sets("duration"):
        window = f"window {format_duration(override.duration)} from its first {event}"
    else:
        window = f"window {format_duration(policy.duration)} (policy)"
    if override.sets("max_attempts"):
        attempts = f"max {_count(override.max_attempts)} {event} failures"
    else:
        attempts = f"max_attempts {_count(policy.max_attempts)} (policy)"
    if override.backoff is not None:
        backoff = f"backoff {override.backoff.describe()}"
    else:
        backoff = f"backoff {policy.backoff.describe()} (policy)"
    line = f"{window}; {attempts}; {backoff}"
    if override.sets("max_retry_rate"):
        own = "its own budget" if override.max_retry_rate is not None else "no budget"
        line += f"; max_retry_rate {_rate_text(override.max_retry_rate)} ({own})"
    return line


def _rate_text(rate: float | None) -> str:
    return "off" if rate is None else f"{describe_rate(rate)} fleet-wide"


@policies.command("show")
@click.argument("name")
@policy_file_option
@json_option
def show_policy(name: str, policy_file: str | None, as_json: bool) -> None:
    """Every setting of policy NAME, defaults included.

    NAME is looked up in the catalogue, then among the policies workers
    registered in Redis (inline policies of tasks included).
    """
    policy, source = _policy(_catalog(policy_file), name)
    if as_json:
        print_json({**policy.effective(), "source": source})
        return
    lines = [
        ("policy", f"{policy.name} ({source})"),
        ("description", policy.description or "-"),
        ("on_events", ", ".join(policy.ordered_events())),
        ("duration", format_duration(policy.duration)),
        ("max_attempts", _count(policy.max_attempts)),
        ("backoff", policy.backoff.describe()),
        ("retry_on", ", ".join(policy.retry_on) or "any error"),
        ("never_retry", ", ".join(policy.never_retry) or "-"),
        ("alert_after", format_duration(policy.alert_after)),
        ("max_retrying", _count(policy.max_retrying)),
        ("retry_queue", policy.retry_queue or "the task's own queue"),
        ("max_retry_rate", _rate_text(policy.max_retry_rate)),
    ]
    for key, value in lines:
        console.print(f"[bold]{key}:[/bold] {escape(value)}")
    console.print("[bold]per event:[/bold]")
    for event in Event:
        if event in policy.on_events:
            console.print(f"  {event}: {escape(_event_line(policy, event))}")
        else:
            console.print(f"  {event}: not retried")
    if policy.duration == DEFAULT_WINDOW:
        console.print(DEFAULT_WINDOW_NOTE)


@policies.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def check_file(file: str) -> None:
    """Validate a policy FILE; exit 2 with one line per problem if it has any."""
    catalog = _catalog(file)
    own = [name for name in catalog.names() if catalog.source(name) == file]
    builtin = builtin_policies()
    shown = [f"{name} [replaces built-in]" if name in builtin else name for name in own]
    noun = "policy" if len(own) == 1 else "policies"
    click.echo(f"ok: {len(own)} {noun} ({', '.join(shown)})")


def _parse_duration_option(option: str, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as error:
        fail(f"{option}: {error}")


def _error_classes(error_type: str) -> tuple[str, tuple[str, ...]]:
    """The dotted path and MRO of an exception class; MROs are known for builtins only."""
    path = error_type if "." in error_type else f"builtins.{error_type}"
    module, _, name = path.rpartition(".")
    found = getattr(builtins, name, None) if module == "builtins" else None
    if isinstance(found, type) and issubclass(found, BaseException):
        return path, tuple(f"{cls.__module__}.{cls.__qualname__}" for cls in found.__mro__)
    return path, (path,)


def _never_ends(policy: RetryPolicy, event: Event) -> bool:
    override = policy.override(event)
    window = override.duration if override.sets("duration") else policy.duration
    limit = override.max_attempts if override.sets("max_attempts") else policy.max_attempts
    return event in policy.on_events and window is None and limit is None


@policies.command("simulate")
@click.argument("name")
@click.option("--attempts", type=int, default=20, show_default=True, help="Failures to play.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the jitter.")
@click.option(
    "--event",
    type=click.Choice([event.value for event in Event]),
    default=Event.ERROR.value,
    show_default=True,
    help="What every attempt fails with.",
)
@click.option(
    "--error-type",
    default="builtins.Exception",
    show_default=True,
    help="Exception class of each failure, for retry_on/never_retry.",
)
@click.option(
    "--retry-after",
    default=None,
    help="The job's retry_after hint on every failure, e.g. 30s: it is the delay, "
    "above backoff max too, until the window or max_attempts ends the job.",
)
@click.option(
    "--attempt-time", default="0s", show_default=True, help="How long each attempt runs."
)
@policy_file_option
@json_option
def simulate_policy(
    name: str,
    attempts: int,
    seed: int,
    event: str,
    error_type: str,
    retry_after: str | None,
    attempt_time: str,
    policy_file: str | None,
    as_json: bool,
) -> None:
    """Play policy NAME on a job that fails every attempt: the delays and when it gives up.

    Time starts at 0 at the first failure; the same --seed gives the same schedule.
    """
    if not 1 <= attempts <= MAX_SIMULATED_ATTEMPTS:
        fail(f"--attempts: got {attempts}; accepted: 1 to {MAX_SIMULATED_ATTEMPTS}")
    run_time = _parse_duration_option("--attempt-time", attempt_time)
    if run_time is None:
        fail("--attempt-time: got 'off'; accepted: a duration like 30s or 2m")
    hint = _parse_duration_option("--retry-after", retry_after)
    if retry_after is not None and hint is None:
        fail("--retry-after: got 'off'; accepted: a duration like 30s or 2m")
    policy, _source = _policy(_catalog(policy_file), name)
    path, mro = _error_classes(error_type)
    try:
        failure = Failure(
            event=Event(event),
            error_type=path,
            error_mro=mro,
            message="simulated failure",
            retry_after=hint,
        )
    except ValueError as error:
        fail(f"--error-type: {error}")
    steps = simulate(policy, failure, attempts, random.Random(seed), attempt_time=run_time)
    last = steps[-1].decision
    gave_up = last if isinstance(last, GiveUp) else None
    if as_json:
        print_json(
            {
                "policy": policy.name,
                "event": event,
                "seed": seed,
                "attempts": attempts,
                "steps": [
                    {
                        "attempt": step.attempt,
                        "failed_at": step.failed_at,
                        "delay": None if isinstance(step.decision, GiveUp) else step.decision.delay,
                        "next_attempt_at": step.next_attempt_at,
                    }
                    for step in steps
                ],
                "max_retry_rate": _budget_json(policy, Event(event)),
                "gave_up": None
                if gave_up is None
                else {
                    "attempt": steps[-1].attempt,
                    "at": steps[-1].failed_at,
                    "limit": gave_up.limit,
                    "reason": gave_up.reason,
                },
            }
        )
        return
    _print_schedule(policy, failure, seed, attempts, steps)


def _print_schedule(
    policy: RetryPolicy, failure: Failure, seed: int, attempts: int, steps: list[Step]
) -> None:
    hint = (
        "" if failure.retry_after is None
        else f" asking to come back in {format_duration(failure.retry_after)} (retry_after)"
    )  # fmt: skip
    click.echo(
        f"policy {policy.name}, every attempt fails with {failure.event}{hint}, seed {seed}"
    )
    rows = []
    for step in steps:
        if isinstance(step.decision, GiveUp):
            rows.append((str(step.attempt), format_duration(step.failed_at), "gives up", "-"))
        else:
            rows.append(
                (
                    str(step.attempt),
                    format_duration(step.failed_at),
                    format_duration(step.decision.delay),
                    format_duration(step.next_attempt_at),
                )
            )
    print_rows(("ATTEMPT", "FAILED_AT", "DELAY", "NEXT_ATTEMPT_AT"), rows)
    last = steps[-1]
    if isinstance(last.decision, GiveUp):
        click.echo(
            f"gives up after attempt {last.attempt}, {format_duration(last.failed_at)} after "
            f"the first failure ({last.decision.limit}): {last.decision.reason}"
        )
    elif _never_ends(policy, failure.event):
        click.echo(
            f"never gives up within {attempts} attempts: duration off and no attempt limit; "
            "an operator stops it with retryctl kill"
        )
    else:
        click.echo(f"still retrying after {attempts} attempts; run more to see the end")
    note = budget_note(policy, failure.event)
    if note is not None:
        click.echo(note)


def _budget_json(policy: RetryPolicy, event: Event) -> dict[str, object] | None:
    budget = policy.retry_budget(event)
    if budget is None:
        return None
    return {"budget": budget.name, "per_second": budget.rate, "rate": format_rate(budget.rate)}
