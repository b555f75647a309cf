"""The Django project; its Celery app is loaded with Django (Celery's "First steps
with Django"), so ``shared_durable_task`` jobs bind to it."""

from proj.celery import app as celery_app

__all__ = ("celery_app",)
