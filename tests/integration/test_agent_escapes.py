"""The agent is untrusted: a hostile stand-in agent attacks orchestrate's git calls, the user's repository
and the worker's environment through whole local cycles on real repositories; every attack must fail."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestration import cycle
from orchestration.config import WorkspaceConfig, parse_config
from orchestration.hub import LocalHub
from orchestration.models import CycleReport
from orchestration.services import Services
from orchestration.settings import get_settings
from orchestration.state import LocalState
from tests.helpers import AGENT_USER, ROOT, ensure_agent_user, make_repo, sh

ATTACKER = ROOT / "tests" / "fixtures" / "attack_agent.py"
pytestmark = pytest.mark.integration


def setup(tmp: Path, mode: str, marker: Path, state_dir: Path | None = None) -> tuple[WorkspaceConfig, Any, Path]:
    repo, bare = make_repo(tmp)
    cfg = parse_config(
        {
            "id": "demo",
            "workspace": {"repo": str(repo)},
            "goals": ["Add a feature file"],
            "sessions": {"claude_dir": str(tmp / "none"), "codex_dir": str(tmp / "none")},
            "decision": {"backend": "heuristic"},
            "agents": {
                "allow": ["claude-code"],
                "claude-code": {"command": str(ATTACKER), "env": {"ATTACK": mode, "MARKER": str(marker)}},
            },
            "pr": {"enabled": False},
        }
    )
    sd = state_dir or tmp / "sd"
    svc = Services(state=LocalState(sd / "local"), hub=LocalHub(sd / "events"), state_dir=sd)
    return cfg, svc, bare


def run_cycle(cfg: WorkspaceConfig, svc: Services) -> CycleReport:
    return cycle.run_local(cycle.enqueue(svc, cfg), svc)


def remote_branches(bare: Path) -> list[str]:
    return sh(["git", "for-each-ref", "--format=%(refname)", "refs/heads/agent"], bare).split()


def clone_of(svc: Services) -> Path:
    return svc.state_dir / "mirrors" / "demo"


@pytest.fixture(autouse=True)
def worker_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a worker's environment holds: none of it may reach an agent or anything it can run."""
    monkeypatch.setenv("GH_TOKEN", "ghp_" + "A1b2C3d4" * 5)
    monkeypatch.setenv("GITHUB_TOKEN", "gho_" + "Z9y8X7w6" * 5)
    monkeypatch.setenv("ORCH_REDIS_URL", "redis://:hunter2-redis-pw@127.0.0.1:1/0")
    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://orch:rabbit-pw-123@127.0.0.1:1//")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-not-for-claude-0123456789")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-for-claude-0123456789abcdef")
    get_settings.cache_clear()


@pytest.mark.timeout(90)
def test_fake_gitdir_is_never_followed(tmp_path: Path) -> None:
    """The agent points `.git` at a gitdir of its own whose config runs code (fsmonitor, hooks) and edits a
    workflow: orchestrate's git calls never read it, nothing runs, the workflow never reaches the remote."""
    marker = tmp_path / "marker"
    cfg, svc, bare = setup(tmp_path, "fake-gitdir", marker)
    report = run_cycle(cfg, svc)

    assert not marker.exists(), f"the agent's code ran as the worker: {marker.read_text()}"
    assert report.status.value == "failed" and report.reason == "policy_denied"
    assert report.pr is not None and report.pr.reason is not None and "permission_denied" in report.pr.reason
    assert ".github/workflows/ci.yml" in report.pr.reason
    assert remote_branches(bare) == []  # the workflow change never left the host
    # The tracked work was still saved, through the real admin dir, on the cycle's branch.
    assert report.branch
    files = sh(["git", "show", "--name-only", "--format=", report.branch], clone_of(svc)).split()
    assert "feature.txt" in files
    # The `.git` file was put back; the fake one is only content now.
    worktree = svc.state_dir / "worktrees" / report.cycle_id
    assert (worktree / ".git").read_text().startswith("gitdir: ")
    assert ".fakegit" not in (worktree / ".git").read_text()


@pytest.mark.timeout(90)
def test_shared_config_and_hooks_are_restored_and_the_users_repository_untouched(tmp_path: Path) -> None:
    """The agent follows `.git` to the admin dir and adds fsmonitor, a filter driver and hooks to the
    shared config. That is the private clone's, never the user's; it is restored before any git call."""
    marker = tmp_path / "marker"
    cfg, svc, bare = setup(tmp_path, "shared-config", marker)
    user_git = Path(cfg.workspace.repo) / ".git"
    before = {p.relative_to(user_git): p.read_bytes() for p in user_git.rglob("*") if p.is_file()}
    config_of_clone: bytes | None = None

    report = run_cycle(cfg, svc)
    config_of_clone = (clone_of(svc) / ".git" / "config").read_bytes()

    assert not marker.exists(), f"the agent's code ran: {marker.read_text()}"
    assert report.status.value == "failed" and report.reason == "policy_denied"
    # The user's repository: not one byte of its config or hooks changed, and its own git runs nothing.
    after = {p.relative_to(user_git): p.read_bytes() for p in user_git.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if k.parts[0] in ("config", "hooks", "info")} == {
        k: v for k, v in before.items() if k.parts[0] in ("config", "hooks", "info")
    }
    sh(["git", "status", "--porcelain"], cfg.workspace.repo)
    assert not marker.exists()
    # The clone: restored as it was.
    assert b"fsmonitor" not in config_of_clone and b"evil" not in config_of_clone
    assert list((clone_of(svc) / ".git" / "hooks").iterdir()) == []
    assert not (clone_of(svc) / ".git" / "info" / "attributes").exists()
    # The work is kept and pushed (nothing it changed is denied), but no PR is proposed for it.
    assert report.branch and f"refs/heads/{report.branch}" in remote_branches(bare)
    files = sh(["git", "show", "--name-only", "--format=", report.branch], bare).split()
    assert "feature.txt" in files


@pytest.mark.timeout(60)
def test_agent_gets_a_minimal_environment(tmp_path: Path) -> None:
    marker = tmp_path / "env.json"
    cfg, svc, _bare = setup(tmp_path, "env", marker)
    report = run_cycle(cfg, svc)
    assert report.status.value == "succeeded", report
    seen = json.loads(marker.read_text())["env"]
    for name in ("GH_TOKEN", "GITHUB_TOKEN", "ORCH_REDIS_URL", "ORCH_STATE_DIR", "CELERY_BROKER_URL", "OPENAI_API_KEY"):
        assert name not in seen, name
    assert not any(k.startswith("ORCH_") for k in seen)
    assert seen["ANTHROPIC_API_KEY"].startswith("sk-ant-")  # its own credential
    assert seen["ATTACK"] == "env" and "PATH" in seen and "HOME" in seen  # what the config granted, the basics
    for value in seen.values():
        assert "hunter2-redis-pw" not in value and "rabbit-pw-123" not in value


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temp dir another user may pass through (pytest's own is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="orch-agent-"))
    os.chmod(path, 0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(90)
def test_agent_runs_as_a_separate_user(shared_tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ORCH_AGENT_USER the agent runs unprivileged: it owns its work tree, and cannot read the worker's
    environment, write the clone's config, or list the worker's state; orchestrate still commits its work."""
    if os.geteuid() != 0:
        pytest.fail("this test creates an OS user and needs root (CI and the dev machines run as root)")
    user = ensure_agent_user()
    state_dir = shared_tmp / "state"
    state_dir.mkdir(mode=0o711)
    drop = shared_tmp / "drop"
    drop.mkdir()
    os.chmod(drop, 0o777)
    marker = drop / "env.json"
    monkeypatch.setenv("ORCH_AGENT_USER", AGENT_USER)
    monkeypatch.setenv("ORCH_STATE_DIR", str(state_dir))
    monkeypatch.setenv("PATH", f"/usr/local/bin:/usr/bin:/bin:{os.environ['PATH']}")
    get_settings.cache_clear()
    cfg, svc, bare = setup(tmp_path, "agent-user", marker, state_dir)
    cfg.agents.claude_code.env["STATE_GUARDS"] = str(state_dir / "guards")

    report = run_cycle(cfg, svc)

    assert report.status.value == "succeeded", report
    seen = json.loads(marker.read_text())
    assert seen["uid"] == user.pw_uid
    assert seen["env"]["HOME"] == user.pw_dir and "GH_TOKEN" not in seen["env"]
    assert seen["parent_environ"].startswith("denied"), seen["parent_environ"][:200]
    assert seen["clone_config"].startswith("denied")
    assert seen["state_guards"].startswith("denied")
    assert seen["worktree"] == "written"
    # orchestrate (root) committed and pushed the agent's work from a tree the agent owns.
    assert report.branch and f"refs/heads/{report.branch}" in remote_branches(bare)
    files = sh(["git", "show", "--name-only", "--format=", report.branch], bare).split()
    assert "feature.txt" in files
