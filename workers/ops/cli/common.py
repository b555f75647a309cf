"""What every retryctl command shares: exit codes, error output, JSON output, the console."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import IntEnum
from typing import TYPE_CHECKING, Any, NoReturn

import click
import redis
from redis.sentinel import MasterNotFoundError
from rich.console import Console

from workers.core import policy_registry
from workers.core.policy_registry import Registered
from workers.core.settings import Settings, SettingsError, load_settings, redact_url
from workers.core.store import Store
from workers.ops.control import Control

if TYPE_CHECKING:
    from celery import Celery


class ExitCode(IntEnum):
    """retryctl's exit codes. Scripts may rely on them."""

    OK = 0
    NOT_FOUND = 1  # the job (or other named thing) does not exist
    USAGE = 2  # bad usage or bad input (click's own usage errors exit 2 as well)
    REDIS_UNREACHABLE = 3


console = Console(highlight=False, soft_wrap=True)
"""Standard output. soft_wrap keeps each row on one line, for grep and narrow terminals."""

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: ExitCode = ExitCode.USAGE) -> NoReturn:
    """Print ``retryctl: error: <message>`` to stderr (one line per line) and exit with code."""
    for line in message.splitlines() or [""]:
        click.echo(f"retryctl: error: {line}", err=True)
    sys.exit(int(code))


def print_json(data: Any) -> None:
    """Print data as JSON: sorted keys, indent 2, nothing else on stdout."""
    click.echo(json.dumps(data, sort_keys=True, indent=2))


def print_rows(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a plain aligned table, one row per line, without wrapping."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [headers, *rows]
    text = "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
    click.echo(text)


# -- the job commands' connection to Redis ------------------------------------


class Connection:
    """Where the job state lives: the group's options over the ``DURABLE_*`` settings.

    Settings and the store are made on first use, so ``retryctl policies``
    never reads them and a bad ``DURABLE_*`` variable only stops the commands
    that need Redis (exit 2, with the setting's message).
    """

    def __init__(self, redis_url: str | None = None, key_prefix: str | None = None) -> None:
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self._settings: Settings | None = None
        self._store: Store | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                settings = load_settings()
            except SettingsError as error:
                fail(str(error))
            update: dict[str, Any] = {}
            if self.redis_url:
                update["redis_url"] = self.redis_url
            if self.key_prefix:
                update["key_prefix"] = self.key_prefix
            self._settings = settings.model_copy(update=update)
        return self._settings

    @property
    def url(self) -> str:
        """The Redis URL, password hidden: safe to print."""
        return redact_url(self.settings.redis_url)

    @property
    def store(self) -> Store:
        """The store, checked reachable (exit 3 naming the URL if not)."""
        if self._store is None:
            settings = self.settings
            store = Store.from_settings(
                settings, socket_connect_timeout=3, socket_timeout=10, health_check_interval=0,
            )  # fmt: skip
            with redis_errors(self):
                store.redis.ping()
            self._store = store
        return self._store

    @property
    def control(self) -> Control:
        """Operator actions on the store (revokes are sent by the kill command itself)."""
        return Control(self.store, retention=self.settings.retention)


def broadcast_app(settings: Settings) -> Celery:
    """A bare Celery app on the deployment's broker, for broadcasting revokes.

    retryctl needs no jobs module for a kill: a revoke is a broadcast on the
    broker, whichever app declared the job. Celery is imported here, not at the
    top: every other command runs without it (a second less to start).
    """
    from celery import Celery

    return Celery(
        "retryctl", broker=settings.effective_broker_url, set_as_current=False,
        config_source={"accept_content": ["json"], "task_serializer": "json",
                       "event_serializer": "json", "result_serializer": "json"},
    )  # fmt: skip


@contextmanager
def redis_errors(connection: Connection) -> Iterator[None]:
    """Turn a lost or refused Redis connection into exit 3 naming the URL (password hidden)."""
    try:
        yield
    except MasterNotFoundError:  # a ConnectionError; its text is every sentinel's repr
        master = connection.settings.redis_sentinel_master
        fail(f"no sentinel at {connection.url} answers with a master for {master!r} "
             "(sentinels down or unreachable, a wrong DURABLE_REDIS_SENTINEL_MASTER or "
             "DURABLE_REDIS_SENTINEL_PASSWORD)", ExitCode.REDIS_UNREACHABLE)  # fmt: skip
    except redis.AuthenticationError as error:  # a ConnectionError: caught first
        fail(f"Redis at {connection.url} refused the login: {error}", ExitCode.REDIS_UNREACHABLE)
    except (redis.ConnectionError, redis.TimeoutError) as error:
        fail(f"cannot reach Redis at {connection.url}: {error}", ExitCode.REDIS_UNREACHABLE)


def connection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The group's options saying where the job state lives; they fill ``ctx.obj``."""

    @click.option(
        "--redis-url", envvar="DURABLE_REDIS_URL", metavar="URL", default=None,
        help="Redis that holds the job state [env DURABLE_REDIS_URL].",
    )  # fmt: skip
    @click.option(
        "--key-prefix", envvar="DURABLE_KEY_PREFIX", metavar="PREFIX", default=None,
        help="Prefix of the layer's Redis keys [env DURABLE_KEY_PREFIX; default durable].",
    )  # fmt: skip
    @click.pass_context
    @functools.wraps(command)
    def with_connection(
        ctx: click.Context, redis_url: str | None, key_prefix: str | None, **kwargs: Any
    ) -> Any:
        ctx.obj = Connection(redis_url, key_prefix)
        return command(**kwargs)

    return with_connection


def connection() -> Connection:
    """The Connection the group made for this invocation."""
    ctx = click.get_current_context()
    found = ctx.find_object(Connection)
    if found is None:  # a command invoked on its own, without the group
        found = ctx.ensure_object(Connection)
    return found


def registered_policy(conn: Connection, name: str) -> Registered | None:
    """The policy workers registered in Redis under ``name`` (exit 3 if Redis is unreachable).

    Raises :class:`policies.PolicyError` if the entry there is not a readable policy.
    """
    with redis_errors(conn):
        return policy_registry.lookup(conn.store, name)


def registered_from(registered: Registered) -> str:
    """``registered by worker w1@host:42 at 2026-05-01 10:00:00 UTC``."""
    at = registered.registered_at
    when = f" at {at.strftime('%Y-%m-%d %H:%M:%S')} UTC" if at is not None else ""
    return f"registered by worker {registered.worker or '?'}{when}"
