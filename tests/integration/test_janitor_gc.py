"""`orchestrate gc` and the janitor on real repositories, with local-mode state."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestration import cycle
from orchestration.agents import worktree as wt
from orchestration.config import parse_config
from orchestration.hub import LocalHub
from orchestration.janitor import gc_worktrees, reap
from orchestration.models import CycleRecord, Reason, Status
from orchestration.services import Services
from orchestration.state import LocalState
from tests.helpers import live_with_marker, make_repo, orchestrate, sh

pytestmark = pytest.mark.integration


@pytest.fixture
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    repo, bare = make_repo(tmp_path)
    cfg = parse_config({"id": "demo", "workspace": {"repo": str(repo)}})
    svc = Services(
        state=LocalState(tmp_path / "sd" / "local"), hub=LocalHub(tmp_path / "ev"), state_dir=tmp_path / "sd"
    )
    return repo, bare, cfg, svc


def new_worktree(svc: Services, cfg, name: str) -> Path:  # type: ignore[no-untyped-def]
    """A cycle worktree as execute makes it: from the private clone, at the pinned base commit."""
    mirror = wt.repo_dir(cfg, svc.state_dir)
    base = wt.base_commit(mirror, cfg.workspace.remote, cfg.workspace.base_branch)
    return wt.create(mirror, svc.state_dir, name, f"agent/{name}", base).path


def ended_cycle_with_worktree(svc: Services, cfg, repo: Path, name: str, change: bool, push: bool) -> Path:  # type: ignore[no-untyped-def]
    ctx = cycle.enqueue(svc, cfg, cycle_id=name)
    path = new_worktree(svc, cfg, name)
    if change:
        (path / f"{name}.txt").write_text("work\n")
        sh(["git", "add", "-A"], path)
        sh(["git", "commit", "-q", "-m", "work"], path)
    if push:
        sh(["git", "push", "-q", "origin", f"agent/{name}"], path)
    ctx.status = Status.SUCCEEDED
    svc.state.save_cycle(CycleRecord(ctx=ctx, finished_at="2026-11-25T00:00:00Z"))
    return path


def test_gc_removes_only_what_is_safe(env) -> None:  # type: ignore[no-untyped-def]
    repo, _bare, cfg, svc = env
    pushed = ended_cycle_with_worktree(svc, cfg, repo, "c-pushed", change=True, push=True)
    unpushed = ended_cycle_with_worktree(svc, cfg, repo, "c-unpushed", change=True, push=False)
    dirty = ended_cycle_with_worktree(svc, cfg, repo, "c-dirty", change=False, push=False)
    (dirty / "scratch.txt").write_text("not committed\n")
    # Ended before anything was done: its branch holds no commit of its own, so nothing is lost with it.
    empty = ended_cycle_with_worktree(svc, cfg, repo, "c-empty", change=False, push=False)
    rows = {w.cycle_id: w for w in gc_worktrees(svc, dry_run=True)}
    assert rows["c-pushed"].action == "would remove"
    assert rows["c-empty"].action == "would remove"
    assert rows["c-unpushed"].action == "kept" and rows["c-unpushed"].detail == "branch not pushed"
    assert rows["c-dirty"].action == "kept" and rows["c-dirty"].detail == "uncommitted changes"
    assert pushed.exists()
    rows = {w.cycle_id: w for w in gc_worktrees(svc)}
    assert rows["c-pushed"].action == "removed" and not pushed.exists()
    assert rows["c-empty"].action == "removed" and not empty.exists()
    assert unpushed.exists() and dirty.exists()
    # The branch and its commit outlive the worktree (in the private clone, and on the remote).
    assert sh(["git", "log", "-1", "--format=%s", "agent/c-pushed"], svc.state_dir / "mirrors" / "demo") == "work"
    assert sh(["git", "branch", "--list", "agent/*"], repo) == ""  # the user's repository was never touched


def test_gc_command_in_local_mode(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo, _bare, cfg, svc = env
    ended_cycle_with_worktree(svc, cfg, repo, "c1", change=True, push=True)
    envs = {"ORCH_STATE_DIR": str(svc.state_dir), "ORCH_REDIS_URL": "redis://127.0.0.1:1/0", "PATH": "/usr/bin:/bin"}
    proc = orchestrate(["gc"], {**__import__("os").environ, **envs})
    assert proc.returncode == 0, proc.stderr
    assert "c1" in proc.stdout and "removed" in proc.stdout


def test_janitor_reaps_orphan_of_a_dead_runner(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _repo, _bare, cfg, svc = env
    ctx = cycle.enqueue(svc, cfg, cycle_id="c-orphan")
    ctx = cycle.start(ctx, svc)
    path = new_worktree(svc, cfg, ctx.cycle_id)
    (path / "half-done.txt").write_text("written before the crash\n")
    marker = f"orch-orphan-{time.time_ns()}"
    agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", marker], start_new_session=True)  # noqa: S603
    dead_runner = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_runner.wait()
    ctx.worktree, ctx.branch = str(path), "agent/c-orphan"
    from orchestration.models import Decision

    ctx.decision = Decision(
        task="t", title="Half done", agent="claude-code", rationale="r", confidence=0.5, op_hash="h"
    )
    import socket

    from orchestration.agents.process import process_identity

    svc.state.save_cycle(
        CycleRecord(ctx=ctx, agent_pgid=agent.pid, host=socket.gethostname(), runner=f"{dead_runner.pid}:1")
    )
    assert reap(svc, now=time.time()) and live_with_marker(marker) == []
    agent.wait(5)
    rec = svc.state.get_cycle(ctx.cycle_id)
    assert rec and rec.status is Status.FAILED and rec.ctx.reason is Reason.WORKER_LOST
    mirror = svc.state_dir / "mirrors" / "demo"
    assert sh(["git", "log", "-1", "--format=%s", "agent/c-orphan"], mirror).startswith("WIP: Half done")
    assert svc.state.acquire_lock("demo", 10)  # released
    # A second pass finds nothing left to do; a live runner is never reaped.
    assert reap(svc) == []
    live = cycle.enqueue(svc, cfg, cycle_id="c-live")
    live.status, live.deadline = Status.RUNNING, time.time() + 600
    svc.state.save_cycle(CycleRecord(ctx=live, agent_pgid=1, host=socket.gethostname(), runner=process_identity()))
    assert reap(svc) == []
