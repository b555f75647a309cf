"""Looking into a Redis broker the way kombu's Redis transport lays it out."""

from __future__ import annotations

import json

import redis


def held_by_a_worker(broker: redis.Redis, job_id: str, attempt: int) -> bool:
    """Whether a worker has reserved the message for ``attempt`` of ``job_id``: it sits
    in kombu's ``unacked`` hash (as ``[message, exchange, routing_key]``), off the queue."""
    for raw in broker.hvals("unacked"):
        message = json.loads(raw)[0]
        headers = message.get("headers") or {}
        if headers.get("id") == job_id and headers.get("durable_attempt") == attempt:
            return True
    return False
