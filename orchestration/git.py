"""Thin, typed wrapper over the git CLI: the one way the domain runs git."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

GIT_TIMEOUT_S = 120.0


class GitError(Exception):
    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        self.git_args = list(args)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"git {' '.join(self.git_args[:3])} failed ({returncode}): {self.stderr[-500:]}")


def git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Non-interactive git: never prompt for credentials, never open an editor or pager."""
    env = dict(os.environ)
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_EDITOR="true",
        GIT_PAGER="cat",
        GIT_ASKPASS="",
        SSH_ASKPASS="",
        GCM_INTERACTIVE="never",
    )
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    if extra:
        env.update(extra)
    return env


def git(
    args: Sequence[str],
    cwd: str | Path,
    *,
    check: bool = True,
    timeout: float = GIT_TIMEOUT_S,
    input_text: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            ["git", *args],
            cwd=str(cwd),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            env=git_env(env),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GitError(args, -1, f"timed out after {timeout:.0f}s") from exc
    except OSError as exc:
        raise GitError(args, -1, str(exc)) from exc
    if check and proc.returncode != 0:
        raise GitError(args, proc.returncode, proc.stderr or proc.stdout)
    return proc


def out(args: Sequence[str], cwd: str | Path, **kw: object) -> str:
    return git(args, cwd, **kw).stdout.strip()  # type: ignore[arg-type]


def has_identity(cwd: str | Path) -> bool:
    return bool(git(["config", "user.email"], cwd, check=False).stdout.strip())


DEFAULT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Orchestrate",
    "GIT_AUTHOR_EMAIL": "orchestrate@localhost",
    "GIT_COMMITTER_NAME": "Orchestrate",
    "GIT_COMMITTER_EMAIL": "orchestrate@localhost",
}


def identity_env(cwd: str | Path) -> dict[str, str]:
    """An author for commits when neither git config nor the environment names one."""
    if has_identity(cwd) or os.environ.get("GIT_AUTHOR_EMAIL"):
        return {}
    return dict(DEFAULT_IDENTITY)


def commit_all(cwd: str | Path, message: str) -> str | None:
    """Stage everything (respecting .gitignore) and commit; returns the new sha, or None if nothing changed."""
    git(["add", "-A"], cwd)
    if git(["diff", "--cached", "--quiet"], cwd, check=False).returncode == 0:
        return None
    git(["commit", "-q", "--no-verify", "-F", "-"], cwd, input_text=message, env=identity_env(cwd))
    return out(["rev-parse", "HEAD"], cwd)


def changed_files(cwd: str | Path, base: str, head: str = "HEAD") -> list[str]:
    """Paths that differ between the merge base of `base` and `head` (the branch's own changes)."""
    text = out(["diff", "--name-only", "-z", f"{base}...{head}"], cwd)
    return sorted(p for p in text.split("\0") if p)
