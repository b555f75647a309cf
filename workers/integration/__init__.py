"""Everything that imports Celery or kombu: the task, the extension installed on
an app, publishing, the worker's request hook and the patches of Celery and
kombu internals. It builds the core's objects per app (``install(app)``)."""
