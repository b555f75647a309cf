"""Enqueue example jobs from a script, as application code would.

    DURABLE_REDIS_URL=redis://127.0.0.1:6379/0 python -m examples.enqueue 42
"""

from __future__ import annotations

import sys

from examples.jobs import charge_card


def main(argv: list[str]) -> int:
    order_id = int(argv[0]) if argv else 42
    result = charge_card.delay(order_id)
    # The task id is the job id: keep it to ask `retryctl show <id>` later.
    print(result.id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
