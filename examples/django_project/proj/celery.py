"""The project's own Celery app, exactly as Celery's "First steps with Django" writes it.

durable-retry needs nothing here: the durable jobs in each app's ``tasks.py``
install the layer on this app, and its worker (``celery -A proj worker``)
checks and completes the settings durable jobs rely on when it starts.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
