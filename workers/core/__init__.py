"""The durable core: job state in Redis, decisions recorded, recovery.

It imports neither Celery nor kombu (a lint test holds it to that). It is
driven through explicit objects: a :class:`~workers.core.runtime.Runtime`
(settings, store, policies, leases), a
:class:`~workers.core.publisher.Publisher` for the broker, and the policies.
"""
