"""What the LLM is told about the repository itself: branch, recent commits, dirty files, tests."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

from orchestration import git
from orchestration.git import GitError

TEST_MARKERS = ("tests", "test", "spec", "__tests__")


class RepoState(BaseModel):
    branch: str | None = None
    recent_commits: list[str] = Field(default_factory=list)
    dirty_files: list[str] = Field(default_factory=list)
    has_tests: bool = False
    error: str | None = None


def repo_state(repo: Path, max_commits: int = 10) -> RepoState:
    """Cheap facts only (a few git calls); a repository that cannot be read gives what it can."""
    state = RepoState(has_tests=_has_tests(repo))
    try:
        state.branch = git.out(["rev-parse", "--abbrev-ref", "HEAD"], repo, timeout=10) or None
        log = git.out(["log", f"-{max_commits}", "--format=%h %s"], repo, timeout=10)
        state.recent_commits = [line[:120] for line in log.splitlines() if line]
        status = git.out(["status", "--porcelain"], repo, timeout=10)
        state.dirty_files = [line[3:] for line in status.splitlines()[:30] if len(line) > 3]
    except GitError as exc:
        state.error = exc.stderr[-200:] or str(exc)
    return state


def _has_tests(repo: Path) -> bool:
    try:
        names = os.listdir(repo)
    except OSError:
        return False
    if any(n in TEST_MARKERS for n in names):
        return True
    for dirpath, dirnames, filenames in os.walk(repo):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in ("node_modules", "vendor")]
        if any(
            f.startswith("test_") or f.endswith(("_test.py", "_test.go", ".test.ts", ".spec.ts")) for f in filenames
        ):
            return True
        if dirpath.count(os.sep) - str(repo).count(os.sep) >= 3:
            dirnames[:] = []
    return False
