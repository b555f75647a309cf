"""Which redis-py exceptions are refusals, and the operator's line for each.

The messages are the ones Redis 7.0 and 6.2 really send (read from both on
this machine, see workers/core/refusals.py): 7 keeps the code in a script's
error, 6.2 wraps it in "ERR Error running script ...: -CODE ...".
"""

from __future__ import annotations

import logging

import pytest
import redis
from redis._parsers.base import BaseParser

from workers.core.refusals import Refusals, describe, refusal_reason


def _parsed(reply: str) -> redis.RedisError:
    """The exception redis-py raises for this error reply."""
    exc: redis.RedisError = BaseParser.parse_error(reply)
    return exc


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("OOM command not allowed when used memory > 'maxmemory'.", "out-of-memory"),
        ("OOM command not allowed when used memory > 'maxmemory'. script: ab9b, on "
         "@user_script:1.", "out-of-memory"),
        ("ERR Error running script (call to f_ab9b): @user_script:1: @user_script: 1: -OOM "
         "command not allowed when used memory > 'maxmemory'.", "out-of-memory"),
        ("READONLY You can't write against a read only replica.", "read-only"),
        ("ERR Error running script (call to f_1): @user_script:9: @user_script: 9: -READONLY "
         "You can't write against a read only replica.", "read-only"),
        ("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to "
         "persist to disk.", "misconf"),
        ("NOREPLICAS Not enough good replicas to write. script: 9253, on @user_script:1.",
         "no-replicas"),
        ("ERR Error running script (call to f_9253): @user_script:1: @user_script: 1: "
         "-NOREPLICAS Not enough good replicas to write.", "no-replicas"),
        ("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN "
         "NOSAVE.", "busy"),
        ("LOADING Redis is loading the dataset in memory", "loading"),
        ("CLUSTERDOWN The cluster is down", "cluster-down"),
        ("TRYAGAIN Multiple keys request during rehashing of slot", "try-again"),
        ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
         "master-down"),
    ],
)
def test_refusals_are_named_whatever_the_redis_version(reply: str, reason: str) -> None:
    assert refusal_reason(_parsed(reply)) == reason


@pytest.mark.parametrize(
    "exc",
    [
        redis.ConnectionError("Connection refused"),
        redis.TimeoutError("Timeout reading from socket"),
        _parsed("ERR wrong number of arguments for 'hset' command"),
        _parsed("BUSYKEY Target key name already exists."),
        _parsed("WRONGTYPE Operation against a key holding the wrong kind of value"),
        _parsed("NOSCRIPT No matching script. Please use EVAL."),
        _parsed("ERR user_script:3: OOM is what this job's own message says"),
        ValueError("OOM"),
    ],
)
def test_other_errors_are_not_refusals(exc: BaseException) -> None:
    assert refusal_reason(exc) is None


def test_the_line_says_what_and_how_to_fix_without_the_password() -> None:
    line = describe(None, "redis://:s3cret@db.example:6379/0", "out-of-memory")
    assert line == ("Redis at redis://:***@db.example:6379/0 refuses writes: out of memory; "
                    "jobs are held, none is lost; raise maxmemory or run `retryctl purge`")
    assert "s3cret" not in describe(None, "redis://:s3cret@h:1/0", "read-only")


def test_a_streak_is_told_once_and_its_counts_stored_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stored: list[dict[str, int]] = []
    alerts: list[dict[str, object]] = []
    refusals = Refusals("redis://h:1/0", alert=alerts.append, store_counts=stored.append)
    oom = _parsed("OOM command not allowed when used memory > 'maxmemory'.")
    with caplog.at_level(logging.INFO, logger="workers.redis"):
        for _ in range(50):
            refusals.note(oom, "out-of-memory")
        assert refusals.unstored() == {"out-of-memory": 50}
        refusals.accepted()
        refusals.accepted()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "refuses writes: out of memory" in warnings[0].getMessage()
    assert [a["reason"] for a in alerts] == ["out-of-memory"]
    assert stored == [{"refusals:out-of-memory": 50}]
    assert refusals.unstored() == {}
    assert any("accepts writes again" in r.getMessage() for r in caplog.records)


def test_counts_that_cannot_be_stored_are_kept_for_later() -> None:
    def refuse(counts: dict[str, int]) -> None:
        raise _parsed("READONLY You can't write against a read only replica.")

    refusals = Refusals("redis://h:1/0", store_counts=refuse)
    refusals.note(_parsed("READONLY You can't write against a read only replica."), "read-only")
    refusals.accepted()
    assert refusals.unstored() == {"read-only": 1}
