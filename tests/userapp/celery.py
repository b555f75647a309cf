"""The user app: its own broker (state db + 1), its own queue, a JSON config hook.

``USERAPP_CONF_JSON`` (a JSON object) is applied over the app's settings, so a
test can start a worker with a setting that conflicts with durable jobs.
"""

from __future__ import annotations

import json
import os

from celery import Celery

QUEUE = "userjobs"


def broker_url(state_url: str, db: int = 1) -> str:
    """The Redis URL of database ``db`` on the server of ``state_url``."""
    base, _, last = state_url.rstrip("/").rpartition("/")
    return f"{base}/{db}" if last.isdigit() else f"{state_url.rstrip('/')}/{db}"


BROKER_URL = broker_url(os.environ["DURABLE_REDIS_URL"])

app = Celery("userapp", broker=BROKER_URL, include=["tests.userapp.tasks"])
app.conf.update(
    task_routes={"tests.userapp.tasks.*": {"queue": QUEUE}},
    broker_connection_retry_on_startup=True,
)
if os.environ.get("USERAPP_CONF_JSON"):
    app.conf.update(json.loads(os.environ["USERAPP_CONF_JSON"]))
