"""Retry policies: the model, the catalogue and the decision.

Pure code: no Celery, no Redis, no clock reads and no randomness of its own.
``decide`` is handed ``now`` and a ``random.Random``.
"""

from policies.backoff import compute_backoff
from policies.catalog import BUILTIN, Catalog, load_catalog, parse_policy, parse_policy_file
from policies.decide import Decision, Failure, GiveUp, History, Limit, Retry, decide
from policies.durations import format_duration, parse_duration
from policies.errors import PolicyError, UnknownPolicyError
from policies.model import DEFAULT_WINDOW, Backoff, Event, EventOverride, RetryPolicy
from policies.simulate import Step, advance, simulate

__all__ = [
    "BUILTIN",
    "DEFAULT_WINDOW",
    "Backoff",
    "Catalog",
    "Decision",
    "Event",
    "EventOverride",
    "Failure",
    "GiveUp",
    "History",
    "Limit",
    "PolicyError",
    "Retry",
    "RetryPolicy",
    "Step",
    "UnknownPolicyError",
    "advance",
    "compute_backoff",
    "decide",
    "format_duration",
    "load_catalog",
    "parse_duration",
    "parse_policy",
    "parse_policy_file",
    "simulate",
]
