"""The private clone, the pinned base and the guard of a worktree's git metadata, on real repositories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestration import git
from orchestration.agents import worktree as wt
from orchestration.agents.runner import agent_env
from orchestration.config import parse_config
from tests.helpers import make_repo, sh


@pytest.fixture
def checkout(tmp_path: Path) -> wt.Checkout:
    repo, _bare = make_repo(tmp_path)
    cfg = parse_config({"id": "demo", "workspace": {"repo": str(repo)}})
    state = tmp_path / "state"
    mirror = wt.repo_dir(cfg, state)
    base = wt.base_commit(mirror, "origin", "main")
    return wt.create(mirror, state, "c1", "agent/c1", base)


def test_clone_is_private_and_pushes_to_the_users_remote(tmp_path: Path) -> None:
    repo, bare = make_repo(tmp_path)
    user_config = (repo / ".git" / "config").read_bytes()
    cfg = parse_config({"id": "demo", "workspace": {"repo": str(repo)}})
    mirror = wt.repo_dir(cfg, tmp_path / "state")
    assert mirror == tmp_path / "state" / "mirrors" / "demo"
    assert oct((tmp_path / "state" / "mirrors").stat().st_mode & 0o777) == oct(0o700)
    assert sh(["git", "config", "--get", "remote.origin.url"], mirror) == str(bare)
    assert list((mirror / ".git" / "hooks").iterdir()) == []  # no sample hooks to switch on
    assert sh(["git", "config", "--get", "user.email"], mirror) == "dev@example.com"  # the user's identity
    # Objects are copied, never hard-linked into the user's repository.
    objects = [p for p in (mirror / ".git" / "objects").rglob("*") if p.is_file() and p.stat().st_nlink > 1]
    assert objects == []
    assert (repo / ".git" / "config").read_bytes() == user_config


def test_a_repository_without_that_remote_becomes_the_clones_remote(tmp_path: Path) -> None:
    repo, _bare = make_repo(tmp_path)
    sh(["git", "remote", "remove", "origin"], repo)
    cfg = parse_config({"id": "solo", "workspace": {"repo": str(repo)}})
    mirror = wt.repo_dir(cfg, tmp_path / "state")
    assert sh(["git", "config", "--get", "remote.origin.url"], mirror) == str(repo.resolve())
    assert wt.base_commit(mirror, "origin", "main") == sh(["git", "rev-parse", "main"], repo)


def test_base_is_a_commit_id(checkout: wt.Checkout) -> None:
    head = git.out(["rev-parse", "HEAD"], checkout.tree)
    assert len(head) == 40 and checkout.violations == []
    with pytest.raises(wt.WorktreeError, match="exists neither"):
        wt.base_commit(checkout.common_dir.parent, "origin", "no-such-branch")


def test_untouched_metadata_passes(checkout: wt.Checkout) -> None:
    (checkout.path / "work.txt").write_text("work\n")
    assert git.commit_all(checkout.tree, "work")
    assert checkout.violations == [] and checkout.changes() == []


def test_replaced_git_file_is_restored_and_reported(checkout: wt.Checkout) -> None:
    original = (checkout.path / ".git").read_text()
    (checkout.path / ".git").unlink()
    (checkout.path / ".git").mkdir()
    (checkout.path / ".git" / "config").write_text("[core]\n\tfsmonitor = /bin/false\n")
    git.out(["status", "--porcelain"], checkout.tree)
    assert (checkout.path / ".git").read_text() == original
    assert checkout.violations == ["tree/.git", "tree/.git/config"]


def test_symlinked_hooks_dir_is_unlinked_never_followed(checkout: wt.Checkout, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not ours to delete\n")
    hooks = checkout.common_dir / "hooks"
    hooks.rmdir()
    hooks.symlink_to(outside)
    checkout.enforce()
    assert hooks.is_dir() and not hooks.is_symlink() and list(hooks.iterdir()) == []
    assert (outside / "keep.txt").read_text() == "not ours to delete\n"  # the link's target was left alone
    assert "common/hooks" in checkout.violations


def test_added_config_lines_and_hooks_are_removed(checkout: wt.Checkout) -> None:
    config = checkout.common_dir / "config"
    before = config.read_bytes()
    with config.open("a") as fh:
        fh.write("[core]\n\tfsmonitor = /tmp/x\n")
    hook = checkout.common_dir / "hooks" / "post-commit"
    hook.write_text("#!/bin/sh\nexit 0\n")
    os.chmod(hook, 0o755)
    (checkout.git_dir / "config.worktree").write_text("[core]\n\thooksPath = /tmp\n")
    checkout.enforce()
    assert config.read_bytes() == before and not hook.exists()
    assert not (checkout.git_dir / "config.worktree").exists()
    assert set(checkout.violations) == {"common/config", "common/hooks/post-commit", "admin/config.worktree"}


def test_the_record_survives_the_process(checkout: wt.Checkout, tmp_path: Path) -> None:
    state = tmp_path / "state"
    loaded = wt.Checkout.load(state, "c1")
    assert loaded is not None and loaded.git_dir == checkout.git_dir and loaded.baseline == checkout.baseline
    assert oct(wt.Checkout.record_path(state, "c1").stat().st_mode & 0o777) == oct(0o600)
    (checkout.common_dir / "info" / "attributes").write_text("* filter=evil\n")
    loaded.enforce()
    loaded.save(state)
    again = wt.Checkout.load(state, "c1")
    assert again is not None and again.violations == ["common/info/attributes"]
    assert wt.Checkout.load(state, "missing") is None


def test_an_unrestorable_admin_dir_stops_git(checkout: wt.Checkout) -> None:
    checkout.baseline["common/config"] = {"kind": "file", "sha": "oversized:1"}  # nothing to restore from
    with pytest.raises(wt.IntegrityError):
        git.out(["status"], checkout.tree)


def test_removal_keeps_unpushed_work_and_removes_pushed(checkout: wt.Checkout, tmp_path: Path) -> None:
    state = tmp_path / "state"
    (checkout.path / "work.txt").write_text("work\n")
    assert wt.removal_blocker(checkout, "origin", True) == "uncommitted changes"
    git.commit_all(checkout.tree, "work")
    assert wt.remove_if_safe(checkout, state, "origin", True) == "branch not pushed"
    git.git(["push", "--", "origin", "agent/c1"], checkout.tree)
    git.git(["fetch", "--", "origin"], checkout.tree)
    assert wt.remove_if_safe(checkout, state, "origin", True) is None
    assert not checkout.path.exists() and wt.Checkout.load(state, "c1") is None


def test_hand_over_needs_a_reachable_worktree(checkout: wt.Checkout, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root, as on CI and the dev machines")
    os.chmod(tmp_path, 0o700)
    with pytest.raises(wt.WorktreeError, match="cannot reach its worktree"):
        wt.hand_over(checkout, "nobody", tmp_path / "state")


def test_each_agent_gets_its_own_credential_only(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "workspace": {"repo": str(tmp_path)},
            "env_allow": ["EXTRA"],
            "agents": {"claude-code": {"env": {"FROM_CONFIG": "x-${env.EXTRA}"}}},
        }
    )
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/home/w",
        "LC_ALL": "C",
        "EXTRA": "granted",
        "ANTHROPIC_API_KEY": "a",
        "CLAUDE_CODE_USE_BEDROCK": "1",
        "OPENAI_API_KEY": "o",
        "CODEX_HOME": "/c",
        "GH_TOKEN": "g",
        "ORCH_REDIS_URL": "redis://x",
        "AWS_SECRET_ACCESS_KEY": "s",
    }
    claude = agent_env(cfg, "claude-code", environ)
    assert claude == {
        "PATH": "/usr/bin",
        "HOME": "/home/w",
        "LC_ALL": "C",
        "ANTHROPIC_API_KEY": "a",
        "CLAUDE_CODE_USE_BEDROCK": "1",
        "FROM_CONFIG": "x-granted",
    }
    codex = agent_env(cfg, "codex", environ)
    assert codex == {"PATH": "/usr/bin", "HOME": "/home/w", "LC_ALL": "C", "OPENAI_API_KEY": "o", "CODEX_HOME": "/c"}
