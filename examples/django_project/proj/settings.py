"""Settings of the example project: only what the billing view and Celery need."""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
INSTALLED_APPS = ["billing"]
ROOT_URLCONF = "proj.urls"
DATABASES: dict = {}
USE_TZ = True

# Celery, read by proj/celery.py (namespace CELERY). The broker is the project's
# own; durable-retry keeps its job state in DURABLE_REDIS_URL (may be another
# Redis, or another database of the same one). The variable is the project's
# own name: Celery itself also reads CELERY_BROKER_URL from the environment, for
# every app, which would hide which app a message was published through.
CELERY_BROKER_URL = os.environ.get("PROJ_BROKER_URL", "redis://127.0.0.1:6379/1")
CELERY_TASK_ROUTES = {"billing.tasks.*": {"queue": "billing"}}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_SEND_TASK_EVENTS = True
