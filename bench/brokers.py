"""The RabbitMQ broker of scenario 10: is one there, and how both sides' apps route to it.

Imported by both sides' job modules (:mod:`bench.jobs`, :mod:`bench.plain_jobs`), so
it stays light: the workers read ``BENCH_QUEUE`` / ``BENCH_QUEUE_TYPE`` and apply
the same queue settings to either app (:func:`apply_env`). The job state stays on
the bench's own Redis; only the broker changes.
"""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlsplit

RABBITMQ_URL = os.environ.get("BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
QUEUE_TYPES = ("classic", "quorum")
# Celery's native delayed delivery: 28 levels of TTL queues (kombu names them).
DELAY_LEVELS = 28


def delay_queue(level: int) -> str:
    return f"celery_delayed_{level}"


def rabbitmq_unavailable(url: str = RABBITMQ_URL, timeout: float = 2.0) -> str | None:
    """Why scenario 10 cannot run on ``url`` (None: a RabbitMQ answers and logs us in).

    Loopback only, and bounded: a TCP connect, then an AMQP login, each within
    ``timeout`` seconds.
    """
    split = urlsplit(url)
    host, port = split.hostname or "", split.port or 5672
    if split.scheme not in ("amqp", "pyamqp"):
        return f"{url!r} is not an amqp:// URL"
    if host not in LOOPBACK:
        return f"RabbitMQ at {host} is not on loopback (the bench uses a local broker only)"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        return f"no RabbitMQ answers on {host}:{port} ({exc})"
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # any failure to log in is the reason to skip
        return f"RabbitMQ on {host}:{port} refused the AMQP login ({type(exc).__name__}: {exc})"
    return None


def queue_settings(queue: str, queue_type: str) -> dict[str, Any]:
    """Celery settings that route every job of an app to ``queue``.

    ``classic``: Celery's defaults but the queue's name (a direct exchange; a
    countdown message is delivered at once and waits, unacked, in the worker that
    took it). ``quorum``: a quorum queue behind a topic exchange, what Celery 5.5+
    needs for native delayed delivery (a countdown of 1 s or more waits in the
    broker's ``celery_delayed_*`` queues, not in a worker; a direct exchange turns
    it off with a warning).
    """
    if queue_type not in QUEUE_TYPES:
        raise ValueError(f"queue type {queue_type!r}: choose from {', '.join(QUEUE_TYPES)}")
    settings: dict[str, Any] = {
        "task_default_queue": queue,
        "task_default_exchange": queue,
        "task_default_routing_key": queue,
        "task_default_queue_type": queue_type,
    }
    if queue_type == "quorum":
        settings["task_default_exchange_type"] = "topic"
        settings["broker_native_delayed_delivery_queue_type"] = "quorum"
    return settings


def apply_env(app: Any) -> None:
    """In a worker of either side: route to ``BENCH_QUEUE`` when the bench set one."""
    queue = os.environ.get("BENCH_QUEUE")
    if queue:
        app.conf.update(queue_settings(queue, os.environ.get("BENCH_QUEUE_TYPE", "classic")))
