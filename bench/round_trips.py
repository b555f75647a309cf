"""The floor of the layer's cost: two bare script round trips around a job's body.

Used by the bench's floor side (:mod:`bench.floor_jobs`) and by ``python -m bench.cost``
(``plain+2rt``). Nothing here runs until a worker process applies it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis


def with_two_round_trips(task: Any, client: redis.Redis) -> None:
    """Wrap ``task``'s body in two bare script round trips, as durable-retry wraps it in
    claim and succeed (a failing attempt makes its second trip too: durable's ``fail``)."""
    first = client.register_script("return {'ok', 1}")
    second = client.register_script("return {'ok', 1}")
    # The instance's run: autoretry_for (the retry path's jobs) wraps it there.
    body: Callable[..., Any] = task.run

    def two_trips(*args: Any, **kwargs: Any) -> Any:
        job = task.request.id
        first(
            keys=[f"d:j:{job}", "d:due", "d:l", "d:r", "d:u", "d:p", "d:d"],
            args=[job, 1, task.name, "p", "h:1", 5000, "0", "", "", "", "abcd1234"],
        )
        try:
            return body(*args, **kwargs)
        finally:
            second(keys=[f"d:j:{job}", "d:l", "d:e", "d:s", f"d:h:{job}"],
                   args=[job, 1, "h:1", 86400000, 0])  # fmt: skip

    task.run = two_trips
