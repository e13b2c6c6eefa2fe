"""Calling the GitHub CLI: argv lists (never a shell), a closed stdin unless we feed it, a bounded time,
no prompts, and one error vocabulary for what gh says back. Used by publish (PRs) and by the issue
tracker source (issues, comments, collaborator permissions)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.config import WorkspaceConfig
from orchestration.git import run_in_group
from orchestration.redact import default_redactor

GH_TIMEOUT_S = 60.0
MIN_CALL_S = 1.0  # the shortest timeout a git or gh call gets, however little time is left
GH_ENV = {"GH_PROMPT_DISABLED": "1", "GH_NO_UPDATE_NOTIFIER": "1", "NO_COLOR": "1"}
GH_EXIT_AUTH = 4  # gh's exit code when a command needs authentication (cmd/gh/main.go: exitAuth)


class GhBadOutput(Exception):
    """gh exited 0 but printed something we cannot trust (an error for the report, never a crash)."""


class GhNotAuthenticated(Exception):
    """A command was refused for auth although `gh auth status` passed (gh before 2.50 exits 0 there
    with an expired token, cli/cli#8845)."""


@dataclass(frozen=True)
class Deadline:
    """When the work under way must be done (epoch seconds), or None: every gh and git push call's own
    timeout is clipped to what is left, and no retry starts that could not end in time."""

    at: float | None = None

    def left(self, cap: float) -> float:
        """A call's timeout: its own `cap`, clipped to what is left before the deadline."""
        return cap if self.at is None else max(MIN_CALL_S, min(cap, self.at - time.time()))

    def no_time_for(self, pause_s: float) -> bool:
        """Whether a retry after `pause_s` would start too late to finish before the deadline."""
        return self.at is not None and time.time() + pause_s + MIN_CALL_S > self.at


NO_DEADLINE = Deadline()


def auth_refused(proc: subprocess.CompletedProcess[str]) -> bool:
    return proc.returncode == GH_EXIT_AUTH or (proc.returncode != 0 and "HTTP 401" in proc.stderr)


def scrub(text: str, limit: int = 300) -> str:
    """Last line(s) of tool output for a reason, with secrets masked (credentials in remote URLs, tokens)."""
    return default_redactor().text(" ".join(text.split()))[-limit:]


def gh_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(GH_ENV)
    return env


def run_gh(
    gh: str, args: Sequence[str], cwd: Path, input_text: str | None = None, *, until: Deadline = NO_DEADLINE
) -> subprocess.CompletedProcess[str]:
    """One gh call: argv list, no shell, stdin closed unless we feed it, bounded, never prompting."""
    return run_in_group([gh, *args], cwd=cwd, env=gh_env(), input_text=input_text, timeout=until.left(GH_TIMEOUT_S))


def repo_args(cfg: WorkspaceConfig) -> list[str]:
    return ["--repo", cfg.pr.repo] if cfg.pr.repo else []


def auth_args(cfg: WorkspaceConfig) -> list[str]:
    """`gh auth status` takes no --repo; a HOST/OWNER/NAME repo narrows the check to that host."""
    repo = cfg.pr.repo or ""
    return ["--hostname", repo.split("/")[0]] if repo.count("/") == 2 else []


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the interpreter's stack
        raise GhBadOutput(f"not JSON: {text[:200]!r}") from exc
