"""Benchmarks of durable-retry against plain Celery, side by side (``./run bench``).

Both sides run in the same bench run, on one local Redis without persistence,
alternating A/B; ratios are the result, absolute numbers the context. The
results go to ``docs/PERFORMANCE.md`` with the machine, versions and settings.
"""
