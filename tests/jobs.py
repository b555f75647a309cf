"""Jobs the integration tests run in real workers (``celery -A tests.jobs worker``).

Every body records that it ran, by job id and attempt, in Redis
(``bodyruns:<job id>`` hash: attempt -> times run; tests/support/bodyruns.py),
so a test can prove that no attempt's body ran twice.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from celery import signals

from tests.support.bodyruns import body_runs, body_started_ms, ran, state_client
from workers import NoCapacity, Permanent, app, durable_task
from workers.integration.extension import durable_of

__all__ = ["app", "body_runs", "body_started_ms"]


_client = state_client
_ran = ran


@durable_task(policy="fast", bind=True)
def add(self: Any, x: int, y: int) -> int:
    _ran(self)
    return x + y


@durable_task(policy="fast", bind=True)
def flaky(self: Any, failures: int) -> str:
    """Fails ``failures`` times, then succeeds."""
    if _ran(self) <= failures:
        raise ConnectionError(f"flaky failure at attempt {self.attempt}")
    return "ok"


@durable_task(policy="fast-forever", bind=True)
def always_fails(self: Any) -> None:
    _ran(self)
    raise RuntimeError("this job never works")


@durable_task(policy="short-window", bind=True)
def fails_in_window(self: Any) -> None:
    _ran(self)
    raise RuntimeError("fails until the window is used up")


@durable_task(policy="fast-forever", bind=True)
def permanent(self: Any) -> None:
    _ran(self)
    raise Permanent("bad input: retrying cannot help")


@durable_task(policy="countdown-3s", bind=True)
def fail_once_slowly(self: Any) -> str:
    """First attempt fails; the retry waits 3 s on a broker countdown."""
    if _ran(self) == 1:
        raise ConnectionError("first attempt fails")
    return "ok"


@durable_task(policy="long-wait", bind=True)
def fail_once_long(self: Any) -> str:
    """First attempt fails; the retry (4 s) is longer than the tests' max countdown."""
    if _ran(self) == 1:
        raise ConnectionError("first attempt fails")
    return "ok"


def _every(name: str, delay: str) -> dict[str, Any]:
    """An inline policy that retries for ever, each retry ``delay`` after its failure."""
    backoff = {"initial": delay, "factor": 1, "max": delay, "jitter": "none"}
    return {"name": name, "duration": "off", "backoff": backoff}


@durable_task(policy=_every("wait-10m", "10m"), bind=True)
def fail_once_wait_10m(self: Any) -> str:
    """First attempt fails; the retry waits 10 minutes in the due set, so it runs
    only when a test says so (``retry-now``), never because the machine was slow."""
    if _ran(self) == 1:
        raise ConnectionError("first attempt fails")
    return "ok"


@durable_task(policy="fast-forever", bind=True)
def sleepy(self: Any, seconds: float, failures: int = 0) -> str:
    """Sleeps; the first ``failures`` attempts fail after sleeping."""
    attempt = _ran(self)
    time.sleep(seconds)
    if attempt <= failures:
        raise ConnectionError("slow failure")
    return "slept"


@durable_task(policy="three-tries", bind=True)
def kills_its_worker(self: Any) -> None:
    """SIGKILLs the process running it, every attempt."""
    _ran(self)
    os.kill(os.getpid(), signal.SIGKILL)


@durable_task(policy="three-tries", bind=True)
def kills_once(self: Any) -> str:
    """SIGKILLs its process on the first attempt only."""
    if _ran(self) == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return "ok"


@durable_task(policy="fast", bind=True)
def waits_for_capacity(self: Any, busy_attempts: int, retry_after: float = 0.2) -> str:
    if _ran(self) <= busy_attempts:
        raise NoCapacity("no slot free", retry_after=retry_after)
    return "ok"


@durable_task(policy="fast-forever", bind=True)
def checkpointer(self: Any, steps: int) -> int:
    """Advances one step per attempt, saving progress, and fails until done."""
    _ran(self)
    done = (self.checkpoint_data or {}).get("done", 0) + 1
    self.checkpoint({"done": done})
    if done < steps:
        raise ConnectionError(f"crashed after step {done}")
    return done


@durable_task(policy="error-window", bind=True)
def progress_then_fail(self: Any, progress_at: int, work_seconds: float) -> str:
    """Fails at once until attempt ``progress_at``, which saves progress, works for
    ``work_seconds`` (past the error window of the streak before) and fails again;
    the attempt after it succeeds."""
    attempt = _ran(self)
    if attempt < progress_at:
        raise ConnectionError(f"attempt {attempt} fails before any progress")
    if attempt == progress_at:
        self.checkpoint({"progress_at": attempt})
        time.sleep(work_seconds)
        raise ConnectionError("failed again after making progress")
    return "ok"


@durable_task(policy="capped", bind=True)
def capped_fails(self: Any, failures: int) -> str:
    if _ran(self) <= failures:
        raise RuntimeError("capped failure")
    return "ok"


@durable_task(policy="long-wait", bind=True)
def echo_after_long_retry(self: Any, when: Any) -> str:
    """Fails once (retried from the due set), then stores ``when`` as it arrived."""
    if _ran(self) == 1:
        raise ConnectionError("first attempt fails")
    _client().set(f"echo:{self.request.id}", when.isoformat())
    return str(when)


@durable_task(policy="countdown-3s", bind=True)
def sync_invoice(self: Any, invoice_id: str, failures: int | None = None,
                 quick_retries: int = 2) -> str:  # fmt: skip
    """Refused by its upstream ``failures`` times (None: always), then succeeds.

    The first ``quick_retries`` failures ask to come back in 0.5 s (``retry_after``);
    later ones wait the policy's 3 s countdown, long enough to watch the job wait
    (the Flower tests).
    """
    attempt = _ran(self)
    if failures is not None and attempt > failures:
        return f"invoice {invoice_id} synced"
    raise NoCapacity(
        f"billing API refused invoice {invoice_id}: 429 Too Many Requests",
        retry_after=0.5 if attempt <= quick_retries else None,
    )


@durable_task(policy="fast-forever", bind=True)
def long_checkpointed(self: Any, steps: int, step_seconds: float) -> int:
    """A long job: one step at a time, saving progress after each, resuming where it was."""
    _ran(self)
    done = (self.checkpoint_data or {}).get("done", 0)
    while done < steps:
        time.sleep(step_seconds)
        done += 1
        self.checkpoint({"done": done})
    return done


@durable_task(policy="fast", bind=True)
def fails_with(self: Any, message: str, repeat: int = 1) -> None:
    """Fails once with ``message`` repeated ``repeat`` times, then succeeds."""
    if _ran(self) == 1:
        raise ValueError(message * repeat)


@durable_task(policy="fast", bind=True)
def fails_with_bytes(self: Any) -> None:
    """Fails once with an exception whose message holds bytes that are not UTF-8."""
    if _ran(self) == 1:
        raise OSError(b"device said \xff\xfe\x80 then stopped".decode("utf-8", "surrogateescape"))


@durable_task(policy="fast", bind=True)
def checkpoints_too_much(self: Any, size: int) -> None:
    """Tries to save a checkpoint of ``size`` bytes."""
    _ran(self)
    self.checkpoint({"blob": "x" * size})


@durable_task(
    policy={
        "name": "alerting",
        "duration": "off",
        "alert_after": "1s",
        "backoff": {"initial": "0.2s", "factor": 1, "max": "0.2s", "jitter": "none"},
    },
    bind=True,
)
def fails_and_alerts(self: Any, secret: str) -> None:
    """Fails every attempt; its policy reports it stuck after 1 s of failing."""
    _ran(self)
    raise RuntimeError("still failing")


@durable_task(policy="to-retry-queue", bind=True)
def retried_on_own_queue(self: Any) -> str:
    if _ran(self) == 1:
        raise ConnectionError("first attempt fails")
    return "ok"


@durable_task(policy=_every("wait-10m", "10m"), bind=True)
def fail_once_revoked_as_it_retries(self: Any) -> str:
    """First attempt fails, and its retry (10 minutes in the due set) is revoked
    after the record says retrying and before the worker's main process sends
    task-retried: the race an operator's revoke can run into on a busy worker.
    ``_revoke_while_the_retry_is_recorded`` sends the revoke."""
    if _ran(self) == 1:
        raise ConnectionError("first attempt fails")
    return "ok"


@signals.task_retry.connect
def _revoke_while_the_retry_is_recorded(sender: Any = None, request: Any = None,
                                        **_: Any) -> None:  # fmt: skip
    """In the pool child, once the retry is recorded (Celery sends task_retry there,
    before the main process gets the attempt's result): revoke the job and wait,
    bounded, until the main process has recorded the kill."""
    if getattr(sender, "name", None) != fail_once_revoked_as_it_retries.name:
        return
    app.control.revoke(request.id)
    store = durable_of(app).runtime.store
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (store.get(request.id) or {}).get("state") != "killed":
        time.sleep(0.05)


@durable_task(policy=_every("countdown-20s", "20s"), bind=True)
def fail_once_wait_20s(self: Any) -> str:
    """First attempt fails; the retry waits 20 s, on a broker countdown in a worker
    with DURABLE_MAX_COUNTDOWN >= 20: time to revoke it and restart every worker
    before it is due, even on a loaded machine (the Flower revoke test: with 8 s, a
    slow machine running three test processes let one retry come due first)."""
    if _ran(self) == 1:
        raise ConnectionError("first attempt fails")
    return "ok"


@durable_task(policy="ceiling-2s", bind=True)
def busy_once(self: Any, retry_after: float) -> str:
    """Says it has no capacity on its first attempt and when to come back."""
    if _ran(self) == 1:
        raise NoCapacity("the service is busy", retry_after=retry_after)
    return "ok"


@durable_task(policy="window-2s", bind=True)
def busy_past_the_window(self: Any, retry_after: float) -> str:
    """Always busy, asking to come back after its policy's window ends."""
    _ran(self)
    raise NoCapacity("the service is busy", retry_after=retry_after)


@durable_task(policy="connection-only", bind=True)
def retries_like_celery(self: Any, how: str, seconds: float = 2) -> str:
    """Code migrated from plain Celery: the first attempt calls ``self.retry`` ``how``
    (countdown, eta, or countdown while handling the error); the second succeeds."""
    if _ran(self) > 1:
        return "ok"
    refused = ConnectionError("upstream refused")
    if how == "countdown":
        raise self.retry(exc=refused, countdown=seconds)
    if how == "eta":
        raise self.retry(exc=refused, eta=datetime.now(timezone.utc) + timedelta(seconds=seconds))
    try:
        raise refused
    except ConnectionError:
        raise self.retry(countdown=seconds) from None


@durable_task(policy="three-tries", bind=True)
def retries_with_max_retries(self: Any) -> None:
    """Celery's ``self.retry(max_retries=5)``: refused, every attempt."""
    _ran(self)
    raise self.retry(exc=ConnectionError("upstream refused"), max_retries=5)


@durable_task(
    policy={
        "duration": "off",
        "max_attempts": 40,
        "backoff": {"initial": "1m", "factor": 1, "max": "1m", "jitter": "none"},
    },
    bind=True,
)
def fails_under_inline_policy(self: Any) -> None:
    """Fails; its unnamed inline policy is named after the task (retries a minute apart)."""
    _ran(self)
    raise ConnectionError("partner API for globex unreachable")


@durable_task(policy="fast", bind=True)
def holds_until(self: Any, flag_path: str, failures: int = 0) -> str:
    """Runs until the file ``flag_path`` exists (at most a minute), then fails its first
    ``failures`` attempts: a test decides when a running body ends, without Redis."""
    attempt = _ran(self)
    deadline = time.monotonic() + 60
    while not os.path.exists(flag_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    if attempt <= failures:
        raise ConnectionError("failed after it was released")
    return "released"


@durable_task(policy="budget-10", bind=True)
def fails_once_budgeted(self: Any) -> str:
    """Fails its first attempt, succeeds at its retry (held to the budget-10 policy's 10/s)."""
    if _ran(self) == 1:
        raise ConnectionError("partner API down")
    return "ok"
