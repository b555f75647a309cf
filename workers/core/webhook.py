"""POST an alert as JSON to ``DURABLE_ALERT_WEBHOOK``, from a thread, retried a few times.

Used for stuck jobs (:mod:`workers.core.alerts`) and for a Redis that refuses
writes (:mod:`workers.core.refusals`). A webhook never delays or breaks a job:
every failure is logged, then given up.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from typing import Any

from workers.core.settings import redact_url

log = logging.getLogger("workers.alerts")

WEBHOOK_TIMEOUT_SECONDS = 5.0
# Pauses between webhook attempts: four attempts in all, then give up (logged).
WEBHOOK_PAUSES_SECONDS = (0.5, 2.0, 8.0)


def send_webhook(url: str, payload: dict[str, Any]) -> threading.Thread:
    """POST ``payload`` as JSON from a daemon thread, retrying a bounded number of times."""
    thread = threading.Thread(
        target=_post, args=(url, json.dumps(payload).encode()), name="durable-alert", daemon=True
    )
    thread.start()
    return thread


def _post(url: str, body: bytes) -> None:
    shown = redact_url(url)
    attempts = len(WEBHOOK_PAUSES_SECONDS) + 1
    for number in range(1, attempts + 1):
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
                response.read()
            return
        except Exception as exc:  # HTTP errors, refused connections, timeouts
            if number == attempts:
                log.error(
                    "durable-retry: alert to %s failed %d times, giving up: %s",
                    shown, attempts, exc,
                )  # fmt: skip
                return
            log.warning(
                "durable-retry: alert to %s failed (attempt %d of %d): %s; retrying",
                shown, number, attempts, exc,
            )  # fmt: skip
            time.sleep(WEBHOOK_PAUSES_SECONDS[number - 1])
