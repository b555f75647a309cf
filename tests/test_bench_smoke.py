"""The bench (``./run bench``) runs every scenario and writes its table.

A tiny version of each scenario (``--smoke``), so the bench cannot rot. It
asserts the table's structure and that the measured numbers are numbers;
never a timing: this machine is shared and the sizes are far too small to
mean anything.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from bench.__main__ import SCENARIOS, parse, rows, run_and_write
from bench.brokers import rabbitmq_unavailable
from bench.cluster import cluster_unavailable

# The fixture runs every scenario once for the module: a few dozen worker starts,
# minutes of a test process. So it runs only when selected (-m bench), as .ci/run
# does in a step of its own, and the default ./run test stays short.
pytestmark = [pytest.mark.integration, pytest.mark.bench, pytest.mark.timeout(500)]

# Scenario 10 needs the machine's RabbitMQ; without one it writes why, and no rows.
NO_RABBITMQ = rabbitmq_unavailable()
# Scenario 11 needs a redis-server that runs in cluster mode (and redis-cli).
NO_CLUSTER = cluster_unavailable()
# Scenario 3's figures are one run minus another (the retry path's per job, less
# the success path's), not measurements of their own.
DIFFERENCES = {"3"}
MEASURED = set(SCENARIOS) - ({"10"} if NO_RABBITMQ else set()) - ({"11"} if NO_CLUSTER else set())


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench") / "PERFORMANCE.md"


@pytest.fixture(scope="module")
def smoke(output: Path) -> list:
    """``./run bench --smoke``: every scenario, tiny, writing its table to ``output``."""
    return run_and_write(parse(["--smoke", "--output", str(output)]), base=output.parent)


def test_every_scenario_has_rows_with_positive_numbers(smoke: list) -> None:
    measured = rows(smoke)
    assert {row.scenario for row in measured} == MEASURED
    for row in measured:
        if row.scenario in DIFFERENCES:
            # At smoke sizes two runs' CPU differ by noise: a difference may be < 0.
            assert math.isfinite(row.ours) and (row.plain is None or math.isfinite(row.plain))
            continue
        assert row.ours >= 0 and not math.isnan(row.ours), row
        if row.plain is not None:
            assert row.plain > 0, row
    throughput = [r for r in measured if r.scenario == "1" and r.metric.startswith("throughput")]
    assert [r.metric for r in throughput] == ["throughput, prefork pool", "throughput, solo pool"]
    assert all(r.ours > 0 and r.plain for r in throughput)
    # Every scenario judges at least one figure against its bar.
    judged = {row.scenario for row in measured if row.met is not None}
    assert judged == MEASURED


def test_the_success_path_costs_two_script_calls_per_job(smoke: list) -> None:
    """Counted, not timed: claim + succeed (sweeper passes add a few hundredths)."""
    trips = [r for r in rows(smoke) if r.metric.startswith("Redis round trips of the layer per j")]
    assert trips and all(1.9 <= r.ours <= 2.5 for r in trips), trips


def test_the_floor_side_runs_beside_both_sides_with_two_trips_per_attempt(smoke: list) -> None:
    """Scenarios 1 and 2 measure their floor in the same run; counted, not timed: the
    floor side makes the two script calls per attempt the layer's floor is (each worker
    process' first call of a script adds one, a few hundredths in a smoke run)."""
    measured = rows(smoke)
    rates = [r for r in measured if r.metric.startswith(("throughput", "attempts per second"))]
    assert len(rates) == 4 and all(r.floor and r.floor_ratio for r in rates), rates
    details = [line for s in smoke if s.title.startswith(("1.", "2.")) for line in s.details]
    counts = [line for line in details if "floor: " in line]
    assert len(counts) == 4, details
    calls = [float(re.search(r"script calls per (?:job|attempt): ([\d.]+)\)", line)[1])
             for line in counts]  # fmt: skip
    assert all(2.0 <= count <= 2.05 for count in calls), counts


def test_no_per_job_key_is_left_after_retention_and_trim(smoke: list) -> None:
    (left,) = [r for r in rows(smoke) if r.metric.startswith("per-job keys")]
    assert left.ours == 0


def test_the_table_is_written_with_every_row(smoke: list, output: Path) -> None:
    text = output.read_text()
    assert "| # | metric | durable-retry | plain Celery | ratio | floor | bar | met? |" in text
    for row in rows(smoke):
        assert f"| {row.scenario} | {row.metric} |" in text
    assert "## Machine and versions" in text
    assert "celery 5." in text


def test_the_producer_pays_one_round_trip_per_enqueue(smoke: list) -> None:
    """Counted, not timed: ``enqueue`` per durable ``delay`` and per job of a ``group``."""
    measured = [r for r in rows(smoke) if r.scenario == "8"]
    rates = [r for r in measured if r.metric.startswith("enqueue rate")]
    assert len(rates) == 2 and all(r.ours > 0 and r.plain for r in rates), rates
    trips = [r for r in measured if r.metric.startswith(("producer round trips",
                                                           "producer script calls"))]  # fmt: skip
    assert len(trips) == 2 and all(r.ours == 1.0 for r in trips), trips


def test_a_death_copies_at_most_the_fleets_prefetch_capacity(smoke: list) -> None:
    """Counted: the dead node (4) and the live worker (2 x 4) may hold 12, not the backlog."""
    (copies,) = [r for r in rows(smoke) if r.scenario == "9"]
    assert 0 < copies.ours <= 12 and copies.met, copies


def test_recovery_on_rabbitmq_measures_both_sides_in_both_queue_setups(
    smoke: list, output: Path
) -> None:
    """Scenario 10: a row per figure and queue setup, both sides measured (not timed)."""
    (section,) = [s for s in smoke if s.title.startswith("10.")]
    if NO_RABBITMQ:
        assert any(line.startswith("- skipped: ") for line in section.details)
        assert "- skipped: " in output.read_text()
        pytest.skip(f"scenario 10 skipped: {NO_RABBITMQ}")
    metrics = [row.metric for row in section.rows]
    for setup in ("classic", "quorum"):
        assert f"RabbitMQ {setup} queue: running job, kill -> body starts on B" in metrics
        assert f"RabbitMQ {setup} queue: countdown retries, due -> run on B (worst)" in metrics
    assert all(row.plain is not None and not math.isnan(row.ours) for row in section.rows)
    # The quorum setup really kept the plain side's countdowns in the broker.
    assert any(line.startswith("- quorum, plain Celery") and " 0 of them" not in line
               for line in section.details)  # fmt: skip
