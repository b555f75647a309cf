"""Result rows and the markdown page they are written to (docs/PERFORMANCE.md)."""

from __future__ import annotations

import math
import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path


def _over_plain(value: float, plain: float | None) -> float | None:
    if plain is None or not plain or math.isnan(plain):
        return None
    return value / plain


@dataclass
class Row:
    """One measured figure of one scenario, both sides where both apply."""

    scenario: str
    metric: str
    ours: float
    plain: float | None = None
    unit: str = ""
    bar: str = ""
    # How the bar is judged: "ratio>=x" or "ratio<=x" (ours / plain), "<=x" or ">=x" (ours).
    rule: str = ""
    note: str = ""
    # The floor side's figure (bench/floor_jobs.py), where the scenario ran it.
    floor: float | None = None

    @property
    def ratio(self) -> float | None:
        return _over_plain(self.ours, self.plain)

    @property
    def floor_ratio(self) -> float | None:
        """The floor over plain Celery: the ratio no tuning of the layer gets past."""
        return None if self.floor is None else _over_plain(self.floor, self.plain)

    @property
    def met(self) -> bool | None:
        if not self.rule:
            return None
        if self.rule.startswith(("ratio>=", "ratio<=")):
            ratio, bound = self.ratio, float(self.rule[7:])
            if ratio is None:
                return None
            return ratio >= bound if self.rule[5] == ">" else ratio <= bound
        if self.rule.startswith("<="):
            return self.ours <= float(self.rule[2:])
        if self.rule.startswith(">="):
            return self.ours >= float(self.rule[2:])
        raise ValueError(f"unknown rule {self.rule!r}")


@dataclass
class Section:
    """A scenario's rows, its settings and the machine's load while it ran."""

    title: str
    rows: list[Row] = field(default_factory=list)
    settings: str = ""
    load_before: str = ""
    load_after: str = ""
    details: list[str] = field(default_factory=list)


def fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "never"
    magnitude = abs(value)
    text = f"{value:,.0f}" if magnitude >= 100 else f"{value:.3g}" if magnitude < 10 else (
        f"{value:.1f}")  # fmt: skip
    return f"{text} {unit}".strip()


def verdict(row: Row) -> str:
    met = row.met
    return "" if met is None else ("yes" if met else "**no**")


def _times(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.2f}x"


def table(sections: list[Section]) -> list[str]:
    lines = [
        "| # | metric | durable-retry | plain Celery | ratio | floor | bar | met? |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for section in sections:
        for row in section.rows:
            plain = row.note if row.plain is None and row.note else fmt(row.plain, row.unit)
            lines.append(
                f"| {row.scenario} | {row.metric} | {fmt(row.ours, row.unit)} | {plain} | "
                f"{_times(row.ratio)} | {_times(row.floor_ratio)} | {row.bar} | {verdict(row)} |"
            )
    return lines


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{mem_kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        memory = "RAM unknown"
    from workers.ops.embedded_redis import find_redis_server

    try:
        server = subprocess.run(
            [find_redis_server(), "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except OSError:
        server = "redis-server: unknown version"
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
            timeout=10, cwd=Path(__file__).resolve().parents[1],
        ).stdout.strip() or "unknown"  # fmt: skip
    except OSError:
        commit = "unknown"
    return [
        f"- durable-retry at commit {commit}",
        f"- machine: {cpu}, {os.cpu_count()} cores, {memory}; {platform.platform()}",
        f"- Python {platform.python_version()}; celery {_version('celery')}, kombu "
        f"{_version('kombu')}, billiard {_version('billiard')}, redis-py {_version('redis')}, "
        f"hiredis {_version('hiredis')}",
        f'- {server}; local, loopback, no persistence (appendonly no, save "")',
    ]


def write(
    path: Path, sections: list[Section], *, command: str, settings: list[str],
    intro: list[str], findings: list[str],
) -> None:  # fmt: skip
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Performance: durable-retry against plain Celery",
        "",
        *intro,
        "",
        f"Measured {now} with `{command}`.",
        "",
        "## Machine and versions",
        "",
        *machine(),
        "",
        "## Settings",
        "",
        *settings,
        "",
        "## Results",
        "",
        *table(sections),
        "",
    ]
    if findings:
        lines += ["## What falls short, why, and the plan", "", *findings, ""]
    lines += ["## Scenario by scenario", ""]
    for section in sections:
        lines += [f"### {section.title}", ""]
        if section.settings:
            lines += [section.settings, ""]
        lines += [f"Load average (1, 5, 15 min) before: {section.load_before}; "
                  f"after: {section.load_after}.", ""]  # fmt: skip
        lines += [*section.details, ""] if section.details else []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")
