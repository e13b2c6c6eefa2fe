"""Builds one history: its repository tree, its sessions (in the repository and elsewhere), its label."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.analyze.generate import Generator, iso
from benchmarks.decide.records import History, Label, SessionInfo
from benchmarks.decide.trees import Tree
from benchmarks.decide.writers import DAY, ClaudeScript, CodexScript, newer_lines
from orchestration.git import git as run_git

MAX_SESSIONS = 50
IDENTITY = {
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
}


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    fast: bool
    write: Callable[[Builder], None]
    since_days: int | None = None  # default: back to the oldest session, plus a day


class Builder:
    """What a scenario writes with: `tree` the repository, `claude`/`codex` its sessions (days before now,
    optionally in a subdirectory or in another directory), `target` the label."""

    def __init__(self, g: Generator, root: Path, git: bool = True) -> None:
        self.g = g
        self.root = root
        self.repo = root / "repo"
        self.repo.mkdir(parents=True)
        self.git = git
        self.scripts: list[ClaudeScript | CodexScript] = []
        self.label: Label | None = None

    def tree(self, files: Tree, base: Path | None = None) -> None:
        """Writes files into the repository (committed as its first commit, before any session) or `base`."""
        for rel, text in files.items():
            path = (base or self.repo) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        if base is None and self.git and not (self.repo / ".git").exists():
            first = min((s.started for s in self.scripts), default=self.g.now - 30 * DAY) - DAY
            env = IDENTITY | {"GIT_AUTHOR_DATE": iso(first), "GIT_COMMITTER_DATE": iso(first)}
            run_git(["init", "-q", "-b", "main"], self.repo)
            run_git(["add", "-A"], self.repo)
            run_git(["commit", "-q", "-m", "Import the project"], self.repo, env=env)

    def elsewhere(self, name: str, files: Tree) -> Path:
        """Another directory on the same machine, beside the repository (`repo-client` shares its prefix)."""
        where = self.root / name
        self.tree(files, where)
        return where

    def _cwd(self, sub: str, where: Path | None) -> Path:
        return (where or self.repo) / sub if sub else where or self.repo

    def claude(self, days_ago: float, sub: str = "", where: Path | None = None, legacy: bool = False) -> ClaudeScript:
        s = ClaudeScript(self.g, self.repo, self._cwd(sub, where), self.g.now - days_ago * DAY, legacy, where)
        self.scripts.append(s)
        return s

    def codex(self, days_ago: float, sub: str = "", where: Path | None = None, legacy: bool = False) -> CodexScript:
        s = CodexScript(self.g, self.repo, self._cwd(sub, where), self.g.now - days_ago * DAY, legacy, where)
        self.scripts.append(s)
        return s

    def target(self, target: str, *also: str, why: str) -> None:
        self.label = Label(target=target, accepted=(target, *also), why=why)

    def build(self, sc: Scenario) -> History:
        if self.label is None:
            raise ValueError(f"{sc.name}: no target")
        infos: list[SessionInfo] = [s.close_file() for s in self.scripts]
        oldest = max(self.g.now - s.started for s in self.scripts) / DAY
        since_days = sc.since_days or math.ceil(oldest) + 1
        cutoff = self.g.now - since_days * DAY
        planted: Counter[str] = Counter()
        newer = 0
        for s in self.scripts:
            if s.out.last_t < cutoff:
                planted["too_old"] += 1
            elif not s.in_workspace:
                planted["other_workspace"] += 1
            else:
                planted.update(s.planted)
                newer += newer_lines(s.out.path)
        files = sorted(
            str(p.relative_to(self.repo)) for p in self.repo.rglob("*") if p.is_file() and ".git" not in p.parts
        )
        return History(
            name=sc.name,
            summary=sc.summary,
            fast=sc.fast,
            root=self.root,
            repo=self.repo,
            claude_dir=self.g.claude_dir,
            codex_dir=self.g.codex_dir,
            repo_files=tuple(files),
            since_days=since_days,
            max_sessions=MAX_SESSIONS,
            label=self.label,
            sessions=tuple(infos),
            planted=dict(sorted(planted.items())),
            newer_lines=newer,
        )
