"""A project's own Celery app, as the tests' stand-in for a real client.

Laid out as Celery's "First steps" recommends (``proj/celery.py``, imported
here), run with ``celery -A tests.userapp worker -Q userjobs``. Its broker is
another database of the test Redis than the job state (db 1 against db 0),
and ``task_routes`` sends its jobs to their own queue, ``userjobs``.
"""

from tests.userapp.celery import app

__all__ = ["app"]
