"""The delay before a retry: exponential, capped, jittered.

Unbounded retries (``duration: off``) make the 10,000th retry an ordinary case,
so the exponent is handled in logarithms and never overflows (dramatiq's
``compute_backoff`` clamps it for the same reason).
"""

from __future__ import annotations

import math
import random

from policies.model import Backoff

# Beyond 2**53 the attempt number no longer fits a float exactly; the delay is
# at the ceiling long before that for any factor > 1.
_MAX_EXPONENT = float(2**53)


def capped_delay(backoff: Backoff, n: int) -> float:
    """The delay before retry n without jitter: ``min(max, initial * factor ** (n - 1))``."""
    if n < 1:
        raise ValueError(f"retry number must be >= 1, got {n}")
    if backoff.initial <= 0:
        return 0.0
    exponent = min(float(n - 1), _MAX_EXPONENT)
    if backoff.factor == 1 or exponent == 0:
        return min(backoff.max, backoff.initial)
    log_growth = exponent * math.log(backoff.factor)
    if log_growth >= math.log(backoff.max) - math.log(backoff.initial):
        return backoff.max
    # Below the ceiling here, so the exponential is finite.
    try:
        grown = backoff.initial * float(backoff.factor**exponent)
    except OverflowError:
        grown = math.exp(math.log(backoff.initial) + log_growth)
    return min(backoff.max, grown)


def compute_backoff(backoff: Backoff, n: int, rng: random.Random) -> float:
    """The delay in seconds before retry n (n=1 is the first retry).

    Never negative and never above ``backoff.max``. ``rng`` is the only source
    of randomness, so the same seed gives the same schedule.
    """
    base = capped_delay(backoff, n)
    if backoff.jitter == "full":
        delay = rng.uniform(0.0, base)
    elif backoff.jitter == "equal":
        delay = base / 2 + rng.uniform(0.0, base / 2)
    else:
        delay = base
    return min(backoff.max, max(0.0, delay))
