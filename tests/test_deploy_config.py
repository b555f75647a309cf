"""deploy/: the Prometheus alert rules and the Grafana dashboard.

The rules are checked and unit-tested by promtool (Debian's ``prometheus``
package; .ci/run installs it); every metric the rules and the dashboard name
must be one the project exports, read from a real collection.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.support.ops import runtime
from tests.support.worker_process import ROOT
from workers.ops.metrics import JobsCollector

DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "durable-retry.json"
METRIC = re.compile(r"\bdurable_[a-z_]+\b")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool is not on PATH: install Debian's prometheus package "
            "(apt-get install prometheus; .ci/run does) to check the alert rules"
        )
    return found


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_exprs() -> dict[str, list[str]]:
    """Panel title -> the PromQL of its queries."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {panel["title"]: [target["expr"] for target in panel["targets"]] for panel in panels}


def test_alert_rules_pass_promtool_check_rules():
    result = run_promtool("check", "rules", str(RULES), cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_each_alert_fires_on_the_series_its_unit_test_gives_and_not_before():
    result = run_promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {
        case["alertname"]
        for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in group["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert tested == {rule["alert"] for rule in rules()}, "every alert has a firing test"


def test_the_rules_cover_what_operators_are_paged_for():
    watched = {rule["alert"]: " ".join(METRIC.findall(rule["expr"])) for rule in rules()}
    assert "durable_stuck_jobs" in watched["DurableStuckJobs"]
    assert "durable_dead_total" in watched["DurableDeadRate"]
    assert "durable_jobs" in watched["DurableParkedJobs"]
    assert "durable_live_sweepers" in watched["DurableNoLiveSweeper"]
    assert "durable_sweeper_lag_seconds" in watched["DurableSweeperLag"]


def test_the_dashboard_shows_each_figure_the_issue_names():
    shown = {title: " ".join(exprs) for title, exprs in dashboard_exprs().items()}
    wanted = {
        "Retrying": 'durable_jobs{state="retrying"}',
        "Retrying jobs by policy": "durable_retrying_jobs",
        "Parked": 'durable_jobs{state="parked"}',
        "Dead rate": "rate(durable_dead_total[",
        "Stuck jobs": "durable_stuck_jobs",
        "Recoveries by kind": "durable_recoveries_total",
        "Sweeper lag and live sweepers": "durable_sweeper_lag_seconds",
        "Live sweepers": "durable_live_sweepers",
        "Paused": "durable_paused_jobs",
    }
    for title, expr in wanted.items():
        assert expr in shown.get(title, ""), (title, shown.get(title))


def test_every_metric_the_dashboard_and_rules_name_is_one_the_project_exports(
    redis_client: redis.Redis,
):
    families = list(JobsCollector(runtime().store).collect())
    assert len(families) > 1, "the collection read Redis"
    exported = {f"{f.name}_total" if f.type == "counter" else f.name for f in families}

    named = {name for rule in rules() for name in METRIC.findall(rule["expr"])}
    named |= {name for exprs in dashboard_exprs().values() for e in exprs
              for name in METRIC.findall(e)}  # fmt: skip

    assert named, "the files name metrics"
    assert named - exported == set(), f"not exported: {sorted(named - exported)}"
