"""The records of the decision benchmark: a history's label, the sessions written for it, the history itself."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Label(Record):
    """What a careful engineer would work on next after reading the history."""

    target: str  # the canonical name: a repo-relative file, a package directory or a test id
    accepted: tuple[str, ...]  # every spelling that names it (the target first), matched case-insensitively
    why: str  # one sentence: why this and not something else in the history


class SessionInfo(Record):
    """One session file as written."""

    provider: Literal["claude-code", "codex"]
    format: str  # the CLI version whose line shapes were written
    path: str  # relative to the history's directory
    cwd: str
    in_workspace: bool
    started: str  # ISO 8601, UTC
    ended: str
    prompts: int
    failures: int  # commands (or tool calls) written as failed


class History(Record):
    """A labelled history: a repository tree, the agent sessions about it (and some about other directories),
    and what should be picked next."""

    name: str
    summary: str  # the story in one line
    fast: bool  # in the `fast` subset
    root: Path  # everything of this history lives below it
    repo: Path  # the repository (a real file tree)
    claude_dir: Path
    codex_dir: Path
    repo_files: tuple[str, ...]  # repo-relative, sorted
    since_days: int  # reaches back over the history's workspace sessions
    max_sessions: int
    label: Label
    sessions: tuple[SessionInfo, ...]
    # Lines and files the analyzer should skip, written so on purpose: kind (as counted in `skipped`) -> count.
    planted: dict[str, int] = Field(default_factory=dict)
    # Lines of kinds the newest CLIs write that the readers may not know (counted as `unknown_type` at most):
    # Claude Code's `api-request*`, `tools-used`, `atis-latch`, `cost-state`; Codex's `world_state`,
    # `token_usage_record`. Only lines the analyzer reads (workspace sessions) are counted.
    newer_lines: int = 0
