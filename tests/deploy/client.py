"""The application side of the deploy test, run on the host as a user's code would.

``python -m tests.deploy.client enqueue N FLAKY`` enqueues N ``charge_card`` jobs
with the README's example module through ``DURABLE_REDIS_URL`` (the compose
stack's published Redis port) and prints their ids as JSON;
``python -m tests.deploy.client status ID...`` prints each job's state and
attempts as the operator API reports them.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def job_status(job_id: str) -> Any:
    """The operator API's view of one job (the one import of it, should it move)."""
    from workers import app, durable_of
    from workers.ops.control import Control

    return Control.of_runtime(durable_of(app).runtime).status(job_id)


def main(argv: list[str]) -> int:
    command, *rest = argv
    if command == "enqueue":
        from examples.jobs import charge_card

        count, flaky = int(rest[0]), int(rest[1])
        ids = [charge_card.delay(1000 + n, flaky_attempts=flaky).id for n in range(count)]
        print(json.dumps(ids))
        return 0
    if command == "status":
        out = {}
        for job_id in rest:
            record = job_status(job_id)
            out[job_id] = None if record is None else {
                "state": record.state.value, "attempts": record.attempts}  # fmt: skip
        print(json.dumps(out))
        return 0
    print(f"unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
