"""Example jobs, declared exactly as an application declares its own.

Run a worker for them with ``celery -A examples.jobs worker``.
"""

from __future__ import annotations

from typing import Any

from workers import NoCapacity, app, durable_task

__all__ = ["app", "charge_card", "sync_inventory", "train_model"]


@durable_task(policy="default", bind=True)
def charge_card(self: Any, order_id: int, flaky_attempts: int = 3) -> str:
    """Fails while the (pretend) payment gateway times out, then succeeds.

    Policy ``default``: retries any failure for up to 1h from the first one.
    """
    if self.attempt <= flaky_attempts:
        raise ConnectionError(f"payment gateway timed out charging order {order_id}")
    return f"order {order_id} charged on attempt {self.attempt}"


@durable_task(policy="forever", bind=True)
def sync_inventory(self: Any, warehouse: str) -> None:
    """The warehouse API is down for good: with ``duration: off`` this retries
    until an operator stops it (``retryctl kill``), never silently after 1h."""
    raise ConnectionError(f"warehouse {warehouse} API unreachable")


@durable_task(policy="capacity", bind=True)
def train_model(self: Any, model: str, busy_attempts: int = 2) -> str:
    """Waits for a free GPU: ``NoCapacity(retry_after=...)`` is the job's hint."""
    if self.attempt <= busy_attempts:
        raise NoCapacity(f"no GPU free for {model}", retry_after=2)
    return f"{model} trained on attempt {self.attempt}"
