"""A ``group`` of durable jobs writes its members' records in one round trip.

``group.apply_async`` publishes its members through ``group._apply_tasks``
(celery/canvas.py). The wrapper runs it inside :func:`enqueue_batch`, with
the producer acquired around both, so the batch's flush publishes through
the producer the group used, before it goes back to the pool. Members that
are not durable jobs publish at once, as without the patch.
(workers/integration/group_batch.py says what the batch does.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from celery import group

from workers.integration.group_batch import enqueue_batch


def batch_group_enqueues() -> None:
    """Wrap ``group._apply_tasks`` (once per process)."""
    original = group._apply_tasks
    if getattr(original, "durable_batch", False):
        return

    def _apply_tasks(self: group, tasks: Any, producer: Any = None, app: Any = None,
                     *args: Any, **kwargs: Any) -> Iterator[Any]:  # fmt: skip
        app = app or self.app
        with app.producer_or_acquire(producer) as held, enqueue_batch():
            # group.apply_async takes every result at once (list(...)): so does this.
            results = list(original(self, tasks, held, app, *args, **kwargs))
        yield from results

    _apply_tasks.durable_batch = True  # type: ignore[attr-defined]
    _apply_tasks.__doc__ = original.__doc__
    group._apply_tasks = _apply_tasks
