"""Every patch of Celery or kombu internals the layer makes, in one place.

Each patch is written for the versions named in :data:`SUPPORTED`, applied
once per process when a durable worker starts (``DurableStep``), and refuses,
with a message saying what to do, to patch a version it was not written for:
a silent patch of changed internals would be worse than none.

- ``kombu_guard``: keeps a worker up through a Redis restart or a garbage
  queue item (kombu's Redis transport).
- ``revoke``: a revoke from Flower or ``celery control`` becomes a kill in
  Redis (Celery's worker control panel).
- ``group``: a group's durable members write their records together, pipelined
  (``celery.canvas.group``). Applied in every process that installs the layer,
  producers too (:func:`apply_producer`); on a version it was not written for it
  is left out, as it only saves time.
- ``redis_put``: a durable job's first message and its record go to Redis in
  one script when the broker is the job state's Redis (kombu's Redis
  transport). Applied with ``group``, in producers too, and left out as it is.
- ``outcome_ack``: kombu's ack leaves Redis alone for a message the attempt's
  outcome script acked already (kombu's Redis transport; workers only).
- ``client_reuse``: kombu's Redis transport builds a redis-py client once per
  channel and pool, not once per publish, event and ack. Applied in producers
  too, and left out as ``group`` is.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from workers.ops.control import Control

# package -> (lowest version, first version not supported): [low, high)
SUPPORTED = {"kombu": ((5, 6), (5, 8)), "celery": ((5, 6), (5, 8))}


class UnsupportedVersion(RuntimeError):
    """A Celery or kombu release the patches were not written for."""


def _release(package: str) -> tuple[int, ...]:
    parts = []
    for piece in version(package).split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_versions() -> None:
    """Raise :class:`UnsupportedVersion` naming the package, its version and the range."""
    for package, (low, high) in SUPPORTED.items():
        found = _release(package)
        if not low <= found < high:
            shown = ".".join(map(str, low)), ".".join(map(str, high))
            raise UnsupportedVersion(
                f"durable-retry patches {package} internals written for {package} "
                f">={shown[0]},<{shown[1]}, but {package} {version(package)} is installed; "
                f"install a {package} in that range (pip install '{package}>={shown[0]},"
                f"<{shown[1]}') or a durable-retry release that supports {version(package)}"
            )


def apply(control_for: Callable[[Any], Control]) -> None:
    """Apply every patch (idempotent); refuse versions they were not written for.

    ``control_for(app)``: the Control the revoke hook writes kills with.
    """
    from workers.integration.patches.client_reuse import reuse_channel_clients
    from workers.integration.patches.group import batch_group_enqueues
    from workers.integration.patches.kombu_guard import harden_redis_transport
    from workers.integration.patches.outcome_ack import skip_acked_deliveries
    from workers.integration.patches.redis_put import write_records_with_messages
    from workers.integration.patches.revoke import install_revoke_hook

    check_versions()
    harden_redis_transport()
    skip_acked_deliveries()
    install_revoke_hook(control_for)
    batch_group_enqueues()
    write_records_with_messages()
    reuse_channel_clients()


def apply_producer() -> bool:
    """Apply the patches a producer needs (idempotent); False, and nothing patched,
    on a Celery or kombu release they were not written for."""
    from workers.integration.patches.client_reuse import reuse_channel_clients
    from workers.integration.patches.group import batch_group_enqueues
    from workers.integration.patches.redis_put import write_records_with_messages

    try:
        check_versions()
    except UnsupportedVersion:
        return False
    batch_group_enqueues()
    write_records_with_messages()
    reuse_channel_clients()
    return True
