"""The durable side's jobs (``celery -A bench.jobs worker``).

The plain Celery side lives in :mod:`bench.plain_jobs`, in its own module:
importing ``workers`` connects the durable worker hooks (sweeper, revoke hook)
to every worker in the process, which would load the plain side with work
that is not Celery's. Bodies are empty unless a scenario needs a record; a
record costs the same Redis calls on both sides.
"""

from __future__ import annotations

import os
from typing import Any

from bench.brokers import apply_env
from bench.records import record_lateness, record_start
from workers import app, durable_task

__all__ = ["app"]

apply_env(app)  # scenario 10: the same queue settings as the plain side


def _policy(name: str, error_delay: str, interruption_delay: str | None = None) -> dict[str, Any]:
    """An unbounded policy with a fixed delay (no jitter), so due times are exact."""
    policy: dict[str, Any] = {
        "name": name,
        "duration": "off",
        "backoff": {"initial": error_delay, "factor": 1, "max": error_delay, "jitter": "none"},
    }
    if interruption_delay is not None:
        fixed = {"initial": interruption_delay, "factor": 1, "max": interruption_delay,
                 "jitter": "none"}  # fmt: skip
        policy["events"] = {"interruption": {"backoff": fixed}}
    return policy


@durable_task(policy=_policy("bench-never-fails", "1s"))
def noop(i: int) -> None:
    """The success path: nothing but the layer's own work."""


@durable_task(policy=_policy("bench-retry-0s", "0s"), bind=True)
def fail_once_0s(self: Any, i: int) -> None:
    if self.attempt == 1:
        raise ConnectionError("upstream refused the connection")


@durable_task(policy=_policy("bench-retry-1s", "1s"), bind=True)
def fail_once_1s(self: Any, i: int) -> None:
    if self.attempt == 1:
        raise ConnectionError("upstream refused the connection")


@durable_task(policy=_policy("bench-late-1s", "1s"), bind=True)
def late_1s(self: Any, i: int) -> None:
    """Fails once; the retry (due 1 s after the failure) records how late it started."""
    if self.attempt == 1:
        raise ConnectionError("upstream refused the connection")
    # The claimed hash keeps the failure time; the due time was that + 1 s exactly.
    fields = self._attempt.fields  # the attempt's own view of its record
    record_lateness(int(fields["last_failure_at"]) + 1000)


# Seconds a recovery scenario's failed first attempt waits for its retry.
RECOVERY_DELAY = os.environ.get("BENCH_RECOVERY_DELAY", "5")


@durable_task(
    policy=_policy("bench-recovery", f"{RECOVERY_DELAY}s", interruption_delay="0s"), bind=True
)
def recovering(self: Any, sleep_seconds: float = 0.0) -> None:
    """Records where and when each attempt started; the first fails or sleeps."""
    record_start(self.request.id, self.attempt, self.request.hostname)
    if self.attempt == 1:
        if sleep_seconds:
            import time

            time.sleep(sleep_seconds)
        raise ConnectionError("upstream refused the connection")


@durable_task(policy=_policy("bench-cleanup", "0.1s"), bind=True)
def cleanup_mix(self: Any, kind: str) -> None:
    """``ok`` succeeds, ``once`` fails once, ``dead`` gives up at once."""
    from workers import Permanent

    if kind == "once" and self.attempt == 1:
        raise ConnectionError("upstream refused the connection")
    if kind == "dead":
        raise Permanent("bad input")
