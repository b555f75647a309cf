"""How the bench judges a figure against its bar (bench/report.py's rules)."""

from __future__ import annotations

import pytest

from bench.report import Row


@pytest.mark.parametrize(
    ("rule", "ours", "plain", "met"),
    [
        ("ratio>=0.95", 95.0, 100.0, True),
        ("ratio>=0.95", 94.0, 100.0, False),
        ("ratio<=1.3", 130.0, 100.0, True),
        ("ratio<=1.3", 131.0, 100.0, False),
        ("<=2.05", 2.05, None, True),
        ("<=2.05", 2.06, None, False),
        (">=1", 0.5, None, False),
        ("", 1.0, 1.0, None),
    ],
)
def test_a_rule_judges_ours_or_the_ratio(rule: str, ours: float, plain: float | None,
                                         met: bool | None) -> None:  # fmt: skip
    assert Row("1", "figure", ours, plain, rule=rule).met is met


def test_a_ratio_rule_without_plain_celery_judges_nothing() -> None:
    assert Row("1", "figure", 1.0, None, rule="ratio<=1.3").met is None


def test_an_unknown_rule_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown rule 'ratio=1'"):
        _ = Row("1", "figure", 1.0, 1.0, rule="ratio=1").met
