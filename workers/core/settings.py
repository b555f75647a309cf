"""Settings read from the environment (``DURABLE_*``), validated once.

Every knob the workers and ``retryctl`` share lives here, so the README's
settings table, the compose file and the code agree on one list. Unknown
``DURABLE_*`` variables are refused: a typo such as ``DURABLE_LEASE_SECOND``
would otherwise be ignored in silence and the default used instead.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from policies import PolicyError, parse_duration
from workers.core.records import DEFAULT_HISTORY_ATTEMPTS

ENV_PREFIX = "DURABLE_"


class SettingsError(ValueError):
    """A ``DURABLE_*`` variable has a value the workers cannot use."""


SENTINEL_FORM = "sentinel://[:password@]HOST:PORT;sentinel://HOST:PORT;...[/DB]"


@dataclass(frozen=True)
class SentinelURL:
    """A ``sentinel://`` URL taken apart: where the sentinels listen, and how to log in
    to the data nodes they point at (the password and DB of the URL are the data nodes')."""

    hosts: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = None


CLUSTER_FORM = (
    "redis+cluster://[[user]:password@]HOST:PORT[,HOST:PORT...] (rediss+cluster:// for TLS)"
)
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
DEFAULT_CLUSTER_SHARDS = 64
NO_CLUSTER_BROKER = (
    "kombu has no Redis Cluster transport (celery#2852): the broker stays on a standalone "
    "or Sentinel Redis, or RabbitMQ. Set DURABLE_BROKER_URL to one of those "
    "(redis://, sentinel://, amqp://)"
)


@dataclass(frozen=True)
class ClusterURL:
    """A ``redis+cluster://`` URL taken apart: the startup nodes and the login."""

    nodes: tuple[tuple[str, int], ...]
    tls: bool = False
    username: str | None = None
    password: str | None = None


def is_cluster_url(url: str | None) -> bool:
    return bool(url) and str(url).split("://", 1)[0].lower() in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> ClusterURL:
    """``redis+cluster://:pw@h1:7000,h2:7001``; raise ValueError naming what is wrong
    (never the password) and the form accepted."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in CLUSTER_SCHEMES:
        raise ValueError(f"not a cluster URL; expected {CLUSTER_FORM}")
    login, at, hosts = rest.rpartition("@")
    if not at:
        login, hosts = "", rest
    hosts, _, path = hosts.partition("/")
    if path.strip("/") not in ("", "0"):
        raise ValueError(f"a Redis Cluster has only database 0, not /{path}; expected "
                         f"{CLUSTER_FORM}")  # fmt: skip
    if "?" in hosts or "#" in hosts:
        raise ValueError("no ?options or #fragment are accepted in a cluster URL")
    nodes = []
    for part in hosts.split(","):
        host, colon, port = part.strip().rpartition(":")
        host = host.strip("[]")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{part.strip()!r} is not a HOST:PORT startup node; expected "
                             f"{CLUSTER_FORM}")  # fmt: skip
        nodes.append((host, int(port)))
    username = password = None
    if at:
        user, colon, secret = login.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    return ClusterURL(tuple(nodes), scheme.lower() == "rediss+cluster", username, password)


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() == "sentinel" if "://" in url else False


def parse_sentinel_url(url: str) -> SentinelURL:
    """``sentinel://h1:26379;sentinel://h2:26379/0`` (kombu's form); raise ValueError
    naming the part that is wrong and the form accepted."""
    hosts: list[tuple[str, int]] = []
    db = 0
    logins: set[tuple[str | None, str | None]] = set()
    parts = [part.strip() for part in url.split(";")]
    for index, part in enumerate(parts):
        shown = redact_url(part)
        try:
            split = urlsplit(part)
            port = split.port
        except ValueError:
            raise ValueError(f"{shown!r} is not a sentinel address; expected {SENTINEL_FORM}") \
                from None
        if split.scheme.lower() != "sentinel" or not split.hostname or port is None:
            raise ValueError(
                f"{shown!r} is not a sentinel address (sentinel://HOST:PORT); "
                f"expected {SENTINEL_FORM}"
            )
        path = split.path.strip("/")
        if path:
            if index != len(parts) - 1 or not path.isdigit():
                raise ValueError(
                    f"{shown!r}: only the last address may name a database, as /DB with DB "
                    f"a number; expected {SENTINEL_FORM}"
                )
            db = int(path)
        if split.query or split.fragment:
            raise ValueError(f"{shown!r}: no ?options or #fragment are accepted here")
        if split.username is not None or split.password is not None:
            logins.add((
                unquote(split.username) if split.username else None,
                unquote(split.password) if split.password is not None else None,
            ))  # fmt: skip
        hosts.append((split.hostname, port))
    if len(logins) > 1:
        raise ValueError(
            "the sentinel addresses carry different logins; give the data nodes' "
            "[user]:password once (on the first address), or the same on each"
        )
    username, password = logins.pop() if logins else (None, None)
    return SentinelURL(tuple(hosts), db, username, password)


class Settings(BaseSettings):
    """What a worker or ``retryctl`` needs to know about its deployment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis that holds the job state (attempts, schedule, leases): "
        "redis://, rediss://, unix://, sentinel://H:P;sentinel://H:P[/DB] with "
        "DURABLE_REDIS_SENTINEL_MASTER, or redis+cluster://H:P[,H:P...] (rediss+cluster:// "
        "for TLS) with DURABLE_BROKER_URL set elsewhere.",
    )
    redis_sentinel_master: str | None = Field(
        default=None,
        description="Name of the Sentinel master group (sentinel monitor NAME ...); required "
        "with a sentinel:// URL, and a sentinel:// broker gets it as master_name.",
    )
    redis_sentinel_password: SecretStr | None = Field(
        default=None,
        description="Password of the sentinels themselves (their requirepass), when they "
        "have one; the data nodes' password is the one in the URL.",
    )
    redis_min_replicas: int = Field(
        default=0,
        ge=0,
        description="Replicas each transition must reach (WAIT) before the worker acks the "
        "message; 0: no wait (asynchronous replication).",
    )
    redis_min_replicas_timeout: float = Field(
        default=1.0,
        gt=0,
        description="How long one WAIT for DURABLE_REDIS_MIN_REPLICAS replicas lasts before "
        "the write counts as failed (and is retried as for an unreachable Redis); at most "
        "half of DURABLE_LEASE_SECONDS.",
    )
    redis_shards: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Fixed number of shards of the job state's keys (a job's shard: "
        "crc32(id) % N; each shard's keys share one hash slot). Default 1 (the original "
        "key names) for redis://, rediss://, unix:// and sentinel://, 64 for a "
        "redis+cluster:// URL. Part of the data's layout: changing it strands stored jobs.",
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery broker; defaults to DURABLE_REDIS_URL. RabbitMQ works too.",
    )
    policy_file: str | None = Field(
        default=None, description="YAML file of named policies, added to the built-ins."
    )
    lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long a running attempt's lease lasts without renewal; "
        "a dead worker's job is recovered after it.",
    )
    sweep_seconds: float = Field(
        default=1.0, gt=0, description="How often each worker's sweeper looks for due work."
    )
    max_countdown: float = Field(
        default=300.0,
        ge=0,
        description="Longest delay held as a broker countdown message; longer delays "
        "wait only in Redis and the sweeper publishes them when due.",
    )
    retention: float = Field(
        default=7 * 86400.0,
        gt=0,
        description="How long dead and killed records (and succeeded ones that failed "
        "before) are kept.",
    )
    succeeded_retention: float = Field(
        default=86400.0,
        gt=0,
        description="How long a record of a job that succeeded is kept (fences late "
        "duplicates of its messages).",
    )
    visibility_timeout: float | None = Field(
        default=None,
        description="Redis broker visibility timeout; defaults to the larger of 1h and "
        "2 x max_countdown so a countdown message is never restored while held.",
    )
    checkpoint_max_bytes: int = Field(
        default=64 * 1024, gt=0, description="Largest checkpoint a job may store."
    )
    redis_wait_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How long an attempt keeps retrying a Redis that is unreachable or "
        "refuses writes (out of memory, read-only...) before it hands its message back to "
        "the broker.",
    )
    history_attempts: int = Field(
        default=DEFAULT_HISTORY_ATTEMPTS,
        ge=0,
        le=1000,
        description="Attempts each job keeps in its history (retryctl show); older ones "
        "are dropped. 0 turns history off.",
    )
    record_fields: Literal["long", "short"] = Field(
        default="long",
        description="Field names of the records this process writes: long (state, "
        "next_attempt_at) or short (st, na: about 20% less memory per waiting job). Both "
        "are always read. Set short only once every worker and producer runs this release "
        "or a later one: an older one cannot read short records (docs/DEPLOYING.md).",
    )
    alert_webhook: str | None = Field(
        default=None,
        description="URL that receives a JSON POST when a job gets stuck, and when Redis "
        "starts refusing writes.",
    )
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Port for Prometheus metrics in each worker."
    )
    key_prefix: str = Field(
        default="durable", min_length=1, description="Prefix of every Redis key the layer writes."
    )

    @field_validator("retention", "succeeded_retention", "max_countdown", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return float(value)  # plain seconds, as every other *_SECONDS setting
            except ValueError:
                pass
            try:
                seconds = parse_duration(value)
            except PolicyError as exc:
                raise ValueError(str(exc)) from None
            if seconds is None:
                raise ValueError("'off' is not accepted here; give a duration like 7d")
            return seconds
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme == "sentinel":
            parse_sentinel_url(value)
            return value
        if scheme in CLUSTER_SCHEMES:
            parse_cluster_url(value)
            return value
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                "expected a Redis URL: redis://[:password@]host:port/db, rediss:// (TLS), "
                f"unix:///path/to/redis.sock, {SENTINEL_FORM} or {CLUSTER_FORM}"
            )
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError("expected a broker URL such as redis://host:6379/0 or amqp://host//")
        return value

    @field_validator("redis_sentinel_master")
    @classmethod
    def _master_name(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(c.isspace() for c in value)):
            raise ValueError("expected the master group's name, as in 'sentinel monitor NAME'")
        return value

    @model_validator(mode="after")
    def _sentinel_has_master(self) -> Settings:
        urls = [("DURABLE_REDIS_URL", self.redis_url), ("DURABLE_BROKER_URL", self.broker_url)]
        on_sentinel = [name for name, url in urls if url and is_sentinel_url(url)]
        if on_sentinel and not self.redis_sentinel_master:
            raise ValueError(
                f"{' and '.join(on_sentinel)} {'name' if len(on_sentinel) > 1 else 'names'} "
                "sentinels: set DURABLE_REDIS_SENTINEL_MASTER "
                "to the master group's name (the NAME of 'sentinel monitor NAME host port quorum')"
            )
        return self

    @model_validator(mode="after")
    def _cluster_rules(self) -> Settings:
        if is_cluster_url(self.broker_url):
            raise ValueError(f"DURABLE_BROKER_URL is a Redis Cluster URL: {NO_CLUSTER_BROKER}")
        if not is_cluster_url(self.redis_url):
            return self
        if self.redis_shards == 1:
            raise ValueError(
                "DURABLE_REDIS_SHARDS=1 cannot run on a Redis Cluster (one shard's keys carry "
                "no hash tag); give at least 2, far more than the masters (default "
                f"{DEFAULT_CLUSTER_SHARDS})"
            )
        return self

    @model_validator(mode="after")
    def _countdown_fits_visibility(self) -> Settings:
        if self.visibility_timeout is not None and self.max_countdown >= self.visibility_timeout:
            raise ValueError(
                f"max_countdown ({self.max_countdown:g}s) must be shorter than "
                f"visibility_timeout ({self.visibility_timeout:g}s), or countdown "
                "messages are restored while a worker still holds them"
            )
        return self

    @model_validator(mode="after")
    def _replica_wait_fits_lease(self) -> Settings:
        # A claim that waits for replicas renews its lease once per try (WAIT, then
        # a pause): a WAIT as long as half the lease leaves no room for the pause,
        # and the sweeper could take a live worker's lease between two tries.
        if self.redis_min_replicas > 0 and self.redis_min_replicas_timeout * 2 > self.lease_seconds:
            raise ValueError(
                f"DURABLE_REDIS_MIN_REPLICAS_TIMEOUT ({self.redis_min_replicas_timeout:g}s) "
                f"must be at most half of DURABLE_LEASE_SECONDS ({self.lease_seconds:g}s): "
                "a claim that waits for replicas renews its lease only between two waits"
            )
        return self

    @property
    def effective_redis_shards(self) -> int:
        if self.redis_shards is not None:
            return self.redis_shards
        return DEFAULT_CLUSTER_SHARDS if is_cluster_url(self.redis_url) else 1

    @property
    def effective_broker_url(self) -> str:
        """The broker the ready-made app and retryctl use; raises SettingsError when it
        would be a Redis Cluster (DURABLE_REDIS_URL one, DURABLE_BROKER_URL unset)."""
        if self.broker_url is None and is_cluster_url(self.redis_url):
            raise SettingsError(
                "DURABLE_REDIS_URL is a Redis Cluster and DURABLE_BROKER_URL is unset, so the "
                f"broker would be that cluster: {NO_CLUSTER_BROKER}"
            )
        return self.broker_url or self.redis_url

    @property
    def effective_visibility_timeout(self) -> float:
        if self.visibility_timeout is not None:
            return self.visibility_timeout
        return max(3600.0, 2 * self.max_countdown)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe to print or log.

    A URL of several addresses (``sentinel://...;sentinel://...``) is redacted
    address by address.
    """
    if ";" in url:
        return ";".join(redact_url(part) for part in url.split(";"))
    if is_cluster_url(url):
        scheme, _, rest = url.partition("://")
        login, at, hosts = rest.rpartition("@")
        if not at or ":" not in login:
            return url
        return f"{scheme}://{login.partition(':')[0]}:***@{hosts}"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _refuse_unknown_variables(environ: dict[str, str]) -> None:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    for variable in sorted(environ):
        if variable.startswith(ENV_PREFIX) and variable not in known:
            close = difflib.get_close_matches(variable, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise SettingsError(
                f"unknown setting {variable}{hint} Known settings: {', '.join(sorted(known))}"
            )


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read and validate the settings; raise :class:`SettingsError` naming what is wrong."""
    env = dict(os.environ if environ is None else environ)
    _refuse_unknown_variables(env)
    values = {
        name: env[ENV_PREFIX + name.upper()]
        for name in Settings.model_fields
        if ENV_PREFIX + name.upper() in env
    }
    try:
        # Pass the values explicitly so the environment is read in one place.
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            variable = ENV_PREFIX + field.upper() if field != "settings" else field
            shown = values.get(field, "")
            if field.endswith("url") and isinstance(shown, str):
                shown = redact_url(shown)
            if field == "settings":  # a rule across settings: the message names them
                problems.append(str(error["msg"]).removeprefix("Value error, "))
                continue
            problems.append(f"{variable}={shown!r}: {error['msg']}")
        raise SettingsError("; ".join(problems)) from None
