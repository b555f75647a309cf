"""retryctl pause / unpause: hold back the jobs of a policy or a task, then release them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from workers.ops import pauses
from workers.ops.cli.common import connection, fail, print_json, redis_errors

DEFAULT_PAUSE_REASON = "paused by an operator (retryctl)"


def _target_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--task", "task", default=None, help="Jobs of this task.")(command)
    return click.option("--policy", "policy", default=None, help="Jobs of this policy.")(command)


def _target(policy: str | None, task: str | None) -> tuple[str, str]:
    if (policy is None) == (task is None):
        fail("give one of --policy P or --task T")
    return ("policy", policy) if policy is not None else ("task", task or "")


def _rate(text: str) -> float:
    """``5``, ``5/s`` or ``300/m``: jobs released a second."""
    number, _, unit = text.partition("/")
    per = {"": 1.0, "s": 1.0, "m": 60.0}.get(unit.strip())
    try:
        rate = float(number) / per if per else -1.0
    except ValueError:
        rate = -1.0
    if rate <= 0:
        fail(f"--rate {text!r}: expected jobs per second above 0, like 10/s or 300/m")
    return rate


@click.command("pause")
@_target_options
@click.option("--reason", default=DEFAULT_PAUSE_REASON, show_default=True,
              help="Why, shown by `retryctl pause --list`.")  # fmt: skip
@click.option("--list", "list_", is_flag=True, help="List the pauses in force.")
@click.option("--json", "as_json", is_flag=True, help="With --list: print JSON.")
def pause(policy: str | None, task: str | None, reason: str, list_: bool, as_json: bool) -> None:
    """Pause the jobs of a policy (--policy P) or a task (--task T).

    While paused no attempt of them starts: a delivery is deferred without
    counting as an attempt, sweepers publish nothing for them, fresh enqueues
    wait too, and the time held does not count against their windows. The
    pause is kept in Redis until `retryctl unpause`.
    """
    conn = connection()
    if list_:
        with redis_errors(conn):
            found = pauses.pauses(conn.store)
        if as_json:
            print_json(found)
            return
        for name, entry in sorted(found.items()):
            click.echo(f"{name}  {entry.get('reason', '')}")
        return
    kind, name = _target(policy, task)
    with redis_errors(conn):
        new = pauses.pause(conn.store, kind, name, reason)
    click.echo(f"paused {kind} {name}" if new else f"{kind} {name} was paused already")


@click.command("unpause")
@_target_options
@click.option("--rate", default=f"{pauses.DEFAULT_RELEASE_RATE:g}/s", show_default=True,
              help="How fast the held jobs are released (jobs/s, or N/m).")  # fmt: skip
def unpause(policy: str | None, task: str | None, rate: str) -> None:
    """End a pause and release its held jobs in jittered waves at --rate, never all at once."""
    kind, name = _target(policy, task)
    per_second = _rate(rate)
    conn = connection()
    with redis_errors(conn):
        done = pauses.unpause(conn.store, kind, name, per_second)
    tail = f"; {done.still_paused} held by another pause" if done.still_paused else ""
    click.echo(f"unpaused {kind} {name}: {done.released} jobs released over "
               f"{done.seconds:.0f}s{tail}")  # fmt: skip


PAUSE_COMMANDS = (pause, unpause)
