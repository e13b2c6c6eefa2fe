"""The agent for a decision: the config's preference, unless another allowed agent did clearly better here."""

from __future__ import annotations

import pytest

from orchestration.config import parse_config
from orchestration.decide import orchestrator
from orchestration.decide.orchestrator import rank_agents
from orchestration.models import TaskRecord


@pytest.fixture(autouse=True)
def both_runnable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(orchestrator, "RUNNABLE_AGENTS", ("claude-code", "codex"))


def cfg(prefer: str = "claude-code", allow: tuple[str, ...] = ("claude-code", "codex")):  # type: ignore[no-untyped-def]
    return parse_config({"workspace": {"repo": "/x"}, "agents": {"allow": list(allow), "prefer": prefer}})


def runs(agent: str, ok: int, failed: int) -> list[TaskRecord]:
    done = [TaskRecord(op_hash="h", agent=agent, status="succeeded")] * ok
    return done + [TaskRecord(op_hash="h", agent=agent, status="failed")] * failed


def test_preference_holds_without_a_record() -> None:
    assert rank_agents(cfg(), None, []) == ["claude-code", "codex"]
    assert rank_agents(cfg(prefer="codex"), None, []) == ["codex", "claude-code"]


def test_a_clearly_better_record_wins() -> None:
    history = runs("claude-code", 0, 4) + runs("codex", 4, 0)
    assert rank_agents(cfg(), None, history)[0] == "codex"


def test_a_slightly_better_or_thin_record_does_not() -> None:
    assert rank_agents(cfg(), None, runs("claude-code", 2, 2) + runs("codex", 3, 1))[0] == "claude-code"
    assert rank_agents(cfg(), None, runs("claude-code", 0, 3) + runs("codex", 2, 0))[0] == "claude-code"


def test_only_allowed_and_available_agents() -> None:
    assert rank_agents(cfg(allow=("codex",), prefer="codex"), None, []) == ["codex"]
    assert rank_agents(cfg(), lambda a: a == "codex", runs("claude-code", 9, 0)) == ["codex"]
    assert rank_agents(cfg(), lambda a: False, []) == []
