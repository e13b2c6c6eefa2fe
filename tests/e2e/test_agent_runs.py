"""The runners against the real CLIs (npm, pinned) and scripted local model APIs: a normal Codex run, a Codex
model that hangs into the deadline, a slow Claude model that runs into the deadline, Codex stopped by the cost
cap read from its rollout, and the fallback to the other agent when the first never starts. Each checks the
process table afterwards."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestration import cycle
from orchestration.agents.runner import run_agent
from orchestration.config import parse_config
from orchestration.hub import LocalHub
from orchestration.services import Services
from orchestration.state import LocalState
from tests.fixtures.anthropic_server import ScriptedAnthropic, claude_env
from tests.fixtures.anthropic_server import write_file_script as claude_write
from tests.fixtures.openai_server import ScriptedOpenAI, codex_env, shell_turn, text_turn, write_codex_config
from tests.fixtures.openai_server import write_file_script as codex_write
from tests.helpers import NODE_BIN, live_with_marker, make_repo, wait_for

pytestmark = pytest.mark.e2e


def binary(name: str) -> str:
    path = NODE_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `npm ci` (or `make install`)", pytrace=False)
    return str(path)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ag-"))  # claude's unix socket path must stay short
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    wt = tmp_path / "wt"
    wt.mkdir()
    subprocess.run(["git", "init", "-q", str(wt)], check=True)  # noqa: S603
    return wt


def use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """run_agent hands the worker's environment to the agent."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def cfg_for(repo: Path, **budget: Any) -> Any:
    return parse_config(
        {
            "workspace": {"repo": str(repo)},
            "budget": {"cycle_s": 300, "idle_timeout_s": 120, **budget},
            "agents": {
                "allow": ["claude-code", "codex"],
                "claude-code": {"command": binary("claude")},
                "codex": {"command": binary("codex")},
            },
        }
    )


def run(cfg: Any, agent: str, worktree: Path, deadline_s: float) -> tuple[Any, list[tuple[str, dict[str, Any]]], str]:
    marker = f"orch-e2e-{uuid.uuid4().hex}"
    events: list[tuple[str, dict[str, Any]]] = []
    result = run_agent(
        agent=agent,
        cfg=cfg,
        worktree=worktree,
        prompt=f"create the file. {marker}",
        deadline=time.time() + deadline_s,
        emit=lambda k, d: events.append((k, d)),
        should_cancel=lambda: False,
    )
    return result, events, marker


@pytest.mark.timeout(120)
def test_codex_normal_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, worktree: Path) -> None:
    with ScriptedOpenAI(script=codex_write("hello.txt", "hello from codex\n")) as srv:
        use_env(monkeypatch, codex_env(srv.base_url, tmp_path / "codex-home"))
        result, events, marker = run(cfg_for(worktree), "codex", worktree, 90)
    assert result.status == "succeeded" and result.exit_code == 0, result
    assert (worktree / "hello.txt").read_text() == "hello from codex\n"
    assert result.files_changed == ["hello.txt"]
    assert result.session_id and result.num_turns == 1
    assert result.tokens.input > 0 and result.tokens.output > 0 and result.cost_usd > 0
    kinds = [k for k, _ in events]
    assert kinds[0] == "agent.started" and kinds[-1] == "agent.finished"
    assert ("agent.file_change", {"path": "hello.txt", "kind": "add", "tool": "apply_patch"}) in events
    assert "agent.usage" in kinds
    assert wait_for(lambda: live_with_marker(marker) == [], timeout=5)


@pytest.mark.timeout(120)
def test_codex_hanging_model_is_stopped_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, worktree: Path
) -> None:
    with ScriptedOpenAI(hang=True) as srv:
        use_env(monkeypatch, codex_env(srv.base_url, tmp_path / "codex-home"))
        t0 = time.monotonic()
        result, _events, marker = run(cfg_for(worktree), "codex", worktree, 6)
        elapsed = time.monotonic() - t0
        # The native codex process (a child of the node launcher) is gone too, not only the launcher.
        assert wait_for(lambda: live_with_marker(marker) == [], timeout=5), live_with_marker(marker)
    assert result.status == "timed_out" and result.stop_reason == "deadline"
    assert elapsed < 6 + 5 + 3


@pytest.mark.timeout(120)
def test_codex_cost_cap_from_the_rollout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, worktree: Path) -> None:
    script = [shell_turn("echo one > one.txt"), {**text_turn("Done."), "delay_s": 30}]
    with ScriptedOpenAI(script=script) as srv:
        use_env(monkeypatch, codex_env(srv.base_url, tmp_path / "codex-home"))
        t0 = time.monotonic()
        result, events, marker = run(cfg_for(worktree, max_cost_usd=0.0001), "codex", worktree, 60)
        assert wait_for(lambda: live_with_marker(marker) == [], timeout=5)
    assert result.status == "failed" and result.stop_reason == "cost_limit", result
    assert time.monotonic() - t0 < 25  # stopped while the slow second response was still pending
    assert any(k == "agent.usage" and d["cost_usd"] >= 0.0001 for k, d in events)


@pytest.mark.timeout(120)
def test_slow_claude_model_runs_into_the_deadline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, worktree: Path, short_tmp: Path
) -> None:
    with ScriptedAnthropic(script=claude_write("slow.txt", "x\n"), delay_s=4) as srv:
        use_env(monkeypatch, claude_env(srv.base_url, tmp_path / "home", tmpdir=short_tmp))
        t0 = time.monotonic()
        result, _events, marker = run(cfg_for(worktree), "claude-code", worktree, 6)
        elapsed = time.monotonic() - t0
        assert wait_for(lambda: live_with_marker(marker) == [], timeout=5), live_with_marker(marker)
    assert result.status == "timed_out" and result.stop_reason == "deadline"
    assert elapsed < 6 + 5 + 3
    assert result.session_id  # it had started: the init event arrived before the deadline


@pytest.mark.timeout(180)
def test_fallback_to_the_other_agent_when_the_first_never_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    repo, _bare = make_repo(tmp_path)
    config = parse_config(
        {
            "id": "demo",
            "workspace": {"repo": str(repo)},
            "goals": ["Add hello.txt"],
            "sessions": {"claude_dir": str(tmp_path / "none"), "codex_dir": str(tmp_path / "none")},
            "decision": {"backend": "heuristic"},
            "agents": {
                "allow": ["claude-code", "codex"],
                "prefer": "claude-code",
                "claude-code": {"command": binary("claude")},
                "codex": {"command": binary("codex")},
            },
            "pr": {"enabled": False},
        }
    )
    svc = Services(state=LocalState(tmp_path / "st"), hub=LocalHub(tmp_path / "ev"), state_dir=tmp_path / "sd")
    with ScriptedOpenAI(script=codex_write("hello.txt", "from codex\n")) as srv:
        env = codex_env(srv.base_url, tmp_path / "codex-home")
        write_codex_config(tmp_path / "codex-home", srv.base_url)
        use_env(monkeypatch, env)
        # Claude Code has no API server to talk to and exits at once with an error: nothing on its stream.
        monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/")
        monkeypatch.setenv("ANTHROPIC_API_KEY", "")
        monkeypatch.setenv("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        report = cycle.run_local(cycle.enqueue(svc, config), svc)
    data = report.public()
    assert report.status.value == "succeeded", data
    assert data["agent"]["fallback_from"] == "claude-code"
    assert "failed before doing anything" in data["agent"]["fallback_reason"]
    assert data["agent"]["files_changed"] == ["hello.txt"]
