"""The billing app's durable job: a reusable module that does not know the Celery app.

``shared_durable_task`` is Celery's ``shared_task`` for durable jobs: it binds
to the project's app (proj/celery.py) and retries by the named policy.
"""

import os

import redis

from workers import shared_durable_task


def _ledger() -> redis.Redis:
    # The example's "payment provider": a Redis hash of charges per invoice
    # (the job-state Redis, for simplicity).
    return redis.Redis.from_url(os.environ["DURABLE_REDIS_URL"], decode_responses=True)


# A policy inline: retry for a day, 3 s after the first failure, then doubling up to 10 min.
CHARGE_POLICY = {
    "name": "billing",
    "duration": "1d",
    "backoff": {"initial": "3s", "factor": 2, "max": "10m", "jitter": "none"},
}


@shared_durable_task(policy=CHARGE_POLICY, bind=True)
def charge(self, invoice_id: int) -> str:
    """Charge an invoice; the provider refuses the first try of every invoice."""
    ledger = _ledger()
    ledger.hincrby(f"billing:attempts:{self.request.id}", str(self.attempt), 1)
    if self.attempt == 1:
        raise ConnectionError("payment provider timed out")
    ledger.hset("billing:charged", str(invoice_id), self.request.id)
    return f"invoice {invoice_id} charged"
