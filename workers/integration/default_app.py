"""The ready-made Celery app, for projects without one of their own.

``from workers import app`` gives it: configured from the ``DURABLE_*``
settings when Celery first needs its configuration (importing reads nothing).
A project with its own app declares jobs on that app instead.
"""

from __future__ import annotations

from celery import Celery

from workers.integration.extension import install

app = Celery("durable_retry")
install(app, configure=True)
