"""The worker module of :mod:`bench.cost` (``celery -A bench.cost_probe worker``).

It imports one side's jobs (``BENCH_COST_SIDE``: ``durable`` or ``plain``) and,
in this throwaway worker process only, applies the what-ifs named in
``BENCH_COST_FLAGS`` (comma-separated). Nothing in ``workers/`` changes on disk.

Plain side (what a piece of the layer costs when added to plain Celery):

- ``call``: a task class with its own ``__call__`` (that only calls ``run``), so
  Celery's tracer calls the task instead of ``task.run`` (celery/app/trace.py).
- ``request``: a ``Request`` subclass (celery/worker/strategy.py builds its request
  class from it), overriding ``on_failure`` as DurableRequest does.
- ``log``: one INFO line per job on ``workers.jobs``, the durable side's format.
- ``rt2``: two bare ``EVALSHA`` round trips through redis-py per attempt
  (:func:`bench.round_trips.with_two_round_trips`); with ``reuse``, the bench's floor
  side (variant ``floor``).
- ``reuse``: kombu builds one redis-py client per channel, not one per publish, event
  and ack: the layer's ``client_reuse`` patch, on plain Celery.

Durable side:

- ``nolog``: the layer's per-job INFO line off (``workers.jobs`` at WARNING).
- ``noreuse``: the ``client_reuse`` patch left out (kombu builds a client per call).
- ``timers``: per-call timers (wall and this thread's CPU) around the pieces of the
  success and failure paths, and a count of kombu's client builds; written to
  ``BENCH_COST_OUT`` (JSON) every 250 jobs.
- ``fields``: claim's reply cut to the fields the success path reads (what-if of a
  claim that answers with HMGET instead of HGETALL): the reply is trimmed client-side
  after parsing, so this measures only the Python cost of the bigger reply.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from celery.signals import after_setup_logger
from celery.worker.request import Request

from bench.timers import Timers

SIDE = os.environ.get("BENCH_COST_SIDE", "durable")
JOB = os.environ.get("BENCH_COST_JOB", "noop")  # or fail_once_0s: the retry path
FLAGS = {f for f in os.environ.get("BENCH_COST_FLAGS", "").split(",") if f}
OUT = os.environ.get("BENCH_COST_OUT", "")

if SIDE == "durable":
    if "noreuse" in FLAGS:
        # Before the layer is installed (bench.jobs): its patches then skip this one.
        from kombu.transport import redis as kombu_redis

        kombu_redis.Channel._durable_client_reuse = True
    from bench import jobs as side_jobs
else:
    from bench import plain_jobs as side_jobs  # type: ignore[no-redef]
app = side_jobs.app

__all__ = ["app"]

jobs_log = logging.getLogger("workers.jobs")


class PlainRequest(Request):
    """What DurableRequest adds on the success path: a subclass with its own on_failure."""

    def on_failure(self, exc_info: Any, send_failed_event: bool = True,
                   return_ok: bool = False) -> Any:  # fmt: skip
        return super().on_failure(exc_info, send_failed_event=send_failed_event,
                                  return_ok=return_ok)  # fmt: skip


def _plain_patches() -> None:
    # A lazy task (PromiseProxy) until evaluated.
    task = getattr(side_jobs, JOB)._get_current_object()
    cls = type(task)
    if "log" in FLAGS:
        # The instance's run: autoretry_for (the retry path's job) wraps it there.
        inner_log = task.run

        def logged(*args: Any, **kwargs: Any) -> Any:
            result = inner_log(*args, **kwargs)
            jobs_log.info("job %s task=%s attempt=%d succeeded%s",
                          task.request.id, task.name, 1, "")  # fmt: skip
            return result

        task.run = logged
    if "rt2" in FLAGS:
        import redis

        from bench.round_trips import with_two_round_trips

        with_two_round_trips(task, redis.Redis.from_url(os.environ["BENCH_REDIS_URL"]))
    if "reuse" in FLAGS:
        from workers.integration.patches.client_reuse import reuse_channel_clients

        reuse_channel_clients()
    if "call" in FLAGS:
        cls.__call__ = lambda self, *args, **kwargs: self.run(*args, **kwargs)
    if "request" in FLAGS:
        cls.Request = "bench.cost_probe:PlainRequest"


def _durable_patches() -> None:
    from redis.commands.core import Script

    import workers.integration.task as task_module
    from workers.core.leases import LeaseKeeper
    from workers.core.store import Store
    from workers.integration.task import DurableTask

    if "fields" in FLAGS:
        keep = {"first_failure_at", "attempt", "state", "checkpoint"}
        claim = Store.claim

        def trimmed(self: Any, *args: Any, **kwargs: Any) -> Any:
            claimed = claim(self, *args, **kwargs)
            fields = getattr(claimed, "fields", None)
            if fields is None:
                return claimed
            return dataclasses.replace(claimed, fields={k: v for k, v in fields.items()
                                                        if k in keep})  # fmt: skip

        Store.claim = trimmed  # type: ignore[method-assign]
    if "timers" in FLAGS:
        timers = Timers(OUT)
        t = timers.wrap
        Store.claim = t("Store.claim", Store.claim)  # type: ignore[method-assign]
        Store.succeed = t("Store.succeed", Store.succeed)  # type: ignore[method-assign]
        Script.__call__ = t("redis-py Script.__call__ (EVALSHA)", Script.__call__)  # type: ignore[method-assign]
        LeaseKeeper.hold = t("LeaseKeeper.hold", LeaseKeeper.hold)  # type: ignore[method-assign]
        LeaseKeeper.release = t("LeaseKeeper.release", LeaseKeeper.release)  # type: ignore[method-assign]
        task_module._call = t("task._call (Runtime.call_redis)", task_module._call)
        # The failure path's pieces (the retry path's job).
        from workers.core import recorder as recorder_module
        from workers.integration.publish import CeleryPublisher

        Store.fail = t("Store.fail", Store.fail)  # type: ignore[method-assign]
        # Wrapped before the layer's client_reuse patch wraps it: counts clients built.
        from kombu.transport import redis as kombu_redis

        kombu_redis.Channel._create_client = t("kombu Channel._create_client (built)",
                                               kombu_redis.Channel._create_client)  # fmt: skip
        DurableTask._after_failure = t("DurableTask._after_failure (total)",  # type: ignore[method-assign]
                                       DurableTask._after_failure)  # fmt: skip
        task_module.failure_from_exception = t("failure_from_exception",
                                               task_module.failure_from_exception)  # fmt: skip
        task_module.decide = t("decide (the policy)", task_module.decide)
        task_module.record_failure = t("record_failure", task_module.record_failure)
        CeleryPublisher.publish = t("CeleryPublisher.publish (the retry)",  # type: ignore[method-assign]
                                    CeleryPublisher.publish)  # fmt: skip
        recorder_module.log_transition = t("log_transition", recorder_module.log_transition)
        recorder_module.retry_note = t("retry_note", recorder_module.retry_note)
        alerts = recorder_module.alerts
        alerts.report_if_stuck = t("alerts.report_if_stuck", alerts.report_if_stuck)  # type: ignore[attr-defined]

        class TimedLog:
            def __init__(self, inner: logging.Logger) -> None:
                self._inner = inner
                self.info = t("log.info (the per-job line)", inner.info)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._inner, name)

        task_module.log = TimedLog(task_module.log)  # type: ignore[assignment]
        call = t("DurableTask.__call__ (total)", DurableTask.__call__)

        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return call(self, *args, **kwargs)
            finally:
                timers.jobs += 1
                if timers.jobs % 250 == 0:
                    timers.dump()

        DurableTask.__call__ = counted  # type: ignore[method-assign]


def _quiet_jobs_log(**_: Any) -> None:
    jobs_log.setLevel(logging.WARNING)


if SIDE == "plain":
    _plain_patches()
else:
    _durable_patches()
    if "nolog" in FLAGS:
        _quiet_jobs_log()
        after_setup_logger.connect(_quiet_jobs_log, weak=False)
