"""Fixtures for the Flower tests: a real Flower and workers that send heartbeats."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import wait_for
from tests.support.flower import FlowerProcess, HeartbeatWorker


@pytest.fixture
def start_heartbeat_worker(
    worker_env: dict[str, str], tmp_path: Path, redis_client: redis.Redis
) -> Iterator[Callable[..., HeartbeatWorker]]:
    """Like ``start_worker``, but the workers send heartbeats so Flower sees them online."""
    started: list[HeartbeatWorker] = []

    def start(
        name: str = "w1", env: dict[str, str] | None = None, **options: Any
    ) -> HeartbeatWorker:
        worker = HeartbeatWorker(
            {**worker_env, **(env or {})}, tmp_path / f"{name}.log", name=name, **options
        )
        started.append(worker)
        worker.start()
        return worker

    yield start
    for worker in started:
        worker.kill()


@pytest.fixture
def start_flower(
    worker_env: dict[str, str], tmp_path: Path, redis_client: redis.Redis
) -> Iterator[Callable[..., FlowerProcess]]:
    """Start a real Flower on the test Redis; ``worker=`` waits until it shows that
    worker online. Every Flower is stopped at teardown."""
    started: list[FlowerProcess] = []

    def start(worker: str | None = None, timeout: float = 30.0) -> FlowerProcess:
        flower = FlowerProcess(worker_env, tmp_path / f"flower{len(started)}.log")
        started.append(flower)
        flower.start()
        if worker is not None:
            wait_for(lambda: flower.worker_online(worker), timeout,
                     f"flower to show worker {worker} online")  # fmt: skip
        return flower

    yield start
    for flower in started:
        flower.stop()
