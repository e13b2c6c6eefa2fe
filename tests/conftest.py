"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration.settings import get_settings
from tests.helpers import ROOT, rabbitmq_vhost, redis_server


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Nothing a test runs in-process writes to the real ORCH_STATE_DIR (the session cache, local state)."""
    monkeypatch.setenv("ORCH_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of our own on a free port, for the whole session."""
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A vhost of our own on the machine's RabbitMQ, for the whole session (the broker; Redis stays the
    hub, state and result backend)."""
    with rabbitmq_vhost() as url:
        yield url


@pytest.fixture
def orch_env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for CLI and worker subprocesses: our Redis, a fresh key prefix and state dir."""
    env = dict(os.environ)
    env.update(
        ORCH_REDIS_URL=redis_url,
        ORCH_KEY_PREFIX=f"t{uuid.uuid4().hex[:8]}",
        ORCH_STATE_DIR=str(tmp_path / "state"),
        ORCH_CONFIG_DIR=str(tmp_path / "configs"),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    return env
