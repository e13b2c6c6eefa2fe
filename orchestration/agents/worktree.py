"""One git worktree per cycle under ORCH_STATE_DIR, on a new branch: the user's checkout is never touched."""

from __future__ import annotations

import re
from pathlib import Path

from orchestration import git
from orchestration.config import WorkspaceConfig, slugify
from orchestration.git import GitError


class WorktreeError(Exception):
    pass


def repo_dir(cfg: WorkspaceConfig, state_dir: Path) -> Path:
    """The repository to branch from: the configured path, or this worker's own clone of a URL."""
    if not cfg.workspace.is_url:
        path = cfg.repo_path()
        if not (path / ".git").exists() and not (path / "HEAD").exists():
            raise WorktreeError(f"workspace.repo {str(path)!r} is not a git repository")
        return path
    mirror = state_dir / "mirrors" / cfg.id
    try:
        if not (mirror / ".git").exists():
            mirror.parent.mkdir(parents=True, exist_ok=True)
            git.git(
                ["clone", "--quiet", "--origin", cfg.workspace.remote, cfg.workspace.repo, str(mirror)],
                mirror.parent,
                timeout=600,
            )
        else:
            git.git(["fetch", "--quiet", "--prune", cfg.workspace.remote], mirror, timeout=600)
    except GitError as exc:
        raise WorktreeError(f"cannot clone or fetch {cfg.workspace.repo}: {exc.stderr[-300:]}") from exc
    return mirror


def base_ref(repo: Path, remote: str, base_branch: str) -> str:
    """`<remote>/<base>` when the remote has it (freshly fetched), else the local branch."""
    git.git(["fetch", "--quiet", remote, base_branch], repo, check=False, timeout=300)
    for ref in (f"refs/remotes/{remote}/{base_branch}", f"refs/heads/{base_branch}"):
        if git.git(["rev-parse", "--verify", "--quiet", ref], repo, check=False).returncode == 0:
            return ref
    raise WorktreeError(f"base branch {base_branch!r} exists neither on {remote!r} nor locally in {repo}")


def branch_name(prefix: str, stamp: str, title: str, cycle_id: str) -> str:
    name = f"{prefix}{stamp}-{slugify(title, 40)}-{cycle_id[-6:]}"
    name = re.sub(r"[~^:?*\[\\\s]+", "-", name).replace("..", ".").strip("/.")
    return name


def create(repo: Path, state_dir: Path, cycle_id: str, branch: str, base: str) -> Path:
    path = state_dir / "worktrees" / cycle_id
    if (path / ".git").exists():
        return path  # a redelivered execute reuses the cycle's worktree
    path.parent.mkdir(parents=True, exist_ok=True)
    git.git(["worktree", "prune"], repo, check=False)
    try:
        git.git(["worktree", "add", "--quiet", "-b", branch, str(path), base], repo)
    except GitError as exc:
        if "already exists" in exc.stderr:
            git.git(["worktree", "add", "--quiet", str(path), branch], repo)
        else:
            raise WorktreeError(f"cannot create worktree: {exc.stderr[-300:]}") from exc
    return path


def remove(repo: Path, path: Path) -> None:
    git.git(["worktree", "remove", "--force", str(path)], repo, check=False)
    git.git(["worktree", "prune"], repo, check=False)


def repo_of(path: Path) -> Path:
    """The repository a worktree belongs to."""
    common = Path(git.out(["rev-parse", "--git-common-dir"], path))
    return (path / common).resolve().parent if not common.is_absolute() else common.parent


def removal_blocker(path: Path, remote: str, push_expected: bool) -> str | None:
    """Why this worktree must stay (uncommitted or unpushed work), or None when removing it loses nothing."""
    try:
        if git.out(["status", "--porcelain"], path):
            return "uncommitted changes"
        branch = git.out(["rev-parse", "--abbrev-ref", "HEAD"], path)
        if not push_expected or branch == "HEAD":
            return None
        if git.git(["remote", "get-url", remote], path, check=False).returncode != 0:
            return None  # no remote to push to: the branch in the repository holds the work
        remote_ref = f"refs/remotes/{remote}/{branch}"
        if git.git(["rev-parse", "--verify", "--quiet", remote_ref], path, check=False).returncode != 0:
            return "branch not pushed"
        ahead = git.out(["rev-list", "--count", f"{remote_ref}..HEAD"], path)
        return f"{ahead} commit(s) not pushed" if ahead not in ("", "0") else None
    except GitError as exc:
        return f"git: {exc.stderr[-120:]}"


def remove_if_safe(path: Path, remote: str, push_expected: bool) -> str | None:
    """Removes the worktree when nothing would be lost; returns what kept it otherwise."""
    blocker = removal_blocker(path, remote, push_expected)
    if blocker is None:
        try:
            remove(repo_of(path), path)
        except GitError as exc:
            return f"git: {exc.stderr[-120:]}"
    return blocker
