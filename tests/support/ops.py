"""The test process's view of the job state: the ready-made app's runtime and a
Control bound to it (revokes go out on that app's broker, as retryctl's do).

Both are looked up on use: the settings are read from the environment the
session sets up (tests/conftest.py), not at import.
"""

from __future__ import annotations

from typing import Any

from workers import app, durable_of
from workers.core.runtime import Runtime
from workers.core.store import Store
from workers.ops.control import Control


def runtime() -> Runtime:
    """The runtime of ``workers.app``, the app the test jobs are declared on."""
    return durable_of(app).runtime


def control_of(store: Store) -> Control:
    """A Control on another store (a test's own Redis); it broadcasts nothing."""
    return Control(store, retention=runtime().settings.retention)


class _Control:
    """``control.kill(...)`` etc. on the test session's store."""

    def __getattr__(self, name: str) -> Any:
        return getattr(Control.of_runtime(runtime(), app=app), name)


control: Control = _Control()  # type: ignore[assignment]
