"""The deploy test runs only when selected: ``./run test -m deploy tests/deploy`` (.ci/run does).

It builds images and starts the compose stack (a few minutes), so the
default ``./run test`` skips it and says how to run it.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "deploy" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(
        reason="deploy test (builds the image, runs docker-compose.yml under podman): "
        "run with ./run test -m deploy tests/deploy -n 0"
    )
    for item in items:
        if "deploy" in item.keywords:
            item.add_marker(skip)
