"""Fixtures shared by the unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fakeredis
import pytest

from orchestration.hub import LocalHub
from orchestration.services import Services
from orchestration.state import LocalState, RedisState


@pytest.fixture(params=["redis", "local"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Services:
    """Services on each state the product has: Redis code on fakeredis, and the local files of `--local`."""
    if request.param == "redis":
        state: Any = RedisState(fakeredis.FakeRedis(), "t")
    else:
        state = LocalState(tmp_path / "local")
    return Services(state=state, hub=LocalHub(tmp_path / "events"), state_dir=tmp_path)
