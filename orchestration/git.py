"""Thin, typed wrapper over the git CLI: the one way the domain runs git.

Every call runs hardened, because the agent can write the work tree (and, without a separate OS user,
more): system and global config are ignored, and command-scope settings (which outrank anything in a
repository's own config) switch off hooks, fsmonitor, credential helpers, signing, pagers, editors and
the `ext::` transport. A call on a cycle's worktree goes through a `Tree`, which names the admin dir
itself (`GIT_DIR`, `GIT_WORK_TREE`), so the `.git` file in the work tree is never read, and which runs a
check of that admin dir before each call (see `orchestration.agents.worktree`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GIT_TIMEOUT_S = 120.0

# Inherited variables that would point git somewhere else than where we say.
_REDIRECTING_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_COMMON_DIR",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_SYSTEM",
    "GIT_EXTERNAL_DIFF",
    "GIT_DIFF_OPTS",
    "GIT_EXEC_PATH",
    "GIT_TEMPLATE_DIR",
    "GIT_PROXY_COMMAND",
    "GIT_SSH",
    "GIT_EDITOR",
    "GIT_SEQUENCE_EDITOR",
)

# Command-scope settings: they override the repository's config, whatever an agent wrote into it.
NEUTRAL_CONFIG: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.untrackedCache", "false"),
    ("core.askPass", ""),
    ("core.editor", "true"),
    ("sequence.editor", "true"),
    ("core.pager", "cat"),
    ("core.attributesFile", "/dev/null"),
    ("credential.helper", ""),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("push.gpgSign", "false"),
    ("gpg.program", "false"),
    ("protocol.ext.allow", "never"),
    ("submodule.recurse", "false"),
    ("fetch.recurseSubmodules", "false"),
    ("push.recurseSubmodules", "no"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("advice.detachedHead", "false"),
)


class GitError(Exception):
    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        self.git_args = list(args)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"git {' '.join(self.git_args[:3])} failed ({returncode}): {self.stderr[-500:]}")


@dataclass
class Tree:
    """A work tree and the admin dir that git must use for it, never the one its `.git` file names.

    `check` runs before every git call on the tree (the integrity check of the admin dir).
    """

    work_tree: Path
    git_dir: Path
    check: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def env(self) -> dict[str, str]:
        return {"GIT_DIR": str(self.git_dir), "GIT_WORK_TREE": str(self.work_tree)}

    @classmethod
    def discover(cls, path: str | Path) -> Tree:
        """The tree of a checkout whose `.git` we trust (the user's, a fixture): resolved once, then pinned."""
        path = Path(path).resolve()
        proc = git(["rev-parse", "--absolute-git-dir"], path)
        return cls(work_tree=path, git_dir=Path(proc.stdout.strip()))


Where = str | Path | Tree


def _credential_helper() -> list[tuple[str, str]]:
    """Pushes over https authenticate through gh (as `gh auth setup-git` would), when gh is installed."""
    gh = shutil.which("gh")
    return [("credential.helper", f"!{shlex.quote(gh)} auth git-credential")] if gh else []


def git_env(extra: dict[str, str] | None = None, config: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    """Non-interactive, hardened git: no system or global config, no prompts, the neutral settings on top."""
    env = {k: v for k, v in os.environ.items() if k not in _REDIRECTING_ENV and not k.startswith("GIT_CONFIG_")}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="",
        SSH_ASKPASS="",
        GCM_INTERACTIVE="never",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_ATTR_NOSYSTEM="1",
        GIT_PAGER="cat",
        GIT_EDITOR="true",
    )
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    pairs = [*NEUTRAL_CONFIG, *_credential_helper(), *config]
    env["GIT_CONFIG_COUNT"] = str(len(pairs))
    for i, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    if extra:
        env.update(extra)
    return env


def run_in_group(
    argv: Sequence[str],
    *,
    cwd: str | Path,
    env: dict[str, str],
    input_text: str | None,
    timeout: float,
    text: bool = True,
    errors: str | None = None,
) -> subprocess.CompletedProcess[Any]:
    """`subprocess.run` with the output captured, in a process group of its own: at the timeout (or when
    the caller is interrupted, e.g. by a task's time limit) the whole group is killed, so that nothing the
    command started (ssh under `git push`, a credential helper) outlives it. Raises `TimeoutExpired`."""
    with subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        list(argv),
        cwd=str(cwd),
        stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=text,
        errors=errors,
        env=env,
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(input_text, timeout=timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def git(
    args: Sequence[str],
    cwd: Where,
    *,
    check: bool = True,
    timeout: float = GIT_TIMEOUT_S,
    input_text: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = _run(args, cwd, check=check, timeout=timeout, stdin=input_text, env=env, text=True)
    return proc  # type: ignore[return-value]


def git_bytes(args: Sequence[str], cwd: Where, *, timeout: float = GIT_TIMEOUT_S) -> bytes:
    """Output as bytes, exactly as git wrote it: for NUL-separated path lists (a path may hold `\r`)."""
    stdout = _run(args, cwd, check=True, timeout=timeout, stdin=None, env=None, text=False).stdout
    return stdout if isinstance(stdout, bytes) else stdout.encode()


def _run(
    args: Sequence[str],
    cwd: Where,
    *,
    check: bool,
    timeout: float,
    stdin: str | None,
    env: dict[str, str] | None,
    text: bool,
) -> subprocess.CompletedProcess[str] | subprocess.CompletedProcess[bytes]:
    config: list[tuple[str, str]] = []
    extra = dict(env or {})
    if isinstance(cwd, Tree):
        if cwd.check is not None:
            cwd.check()
        extra.update(cwd.env())
        # Our own calls may run on a work tree owned by the agent's user; naming it here is enough.
        config.append(("safe.directory", str(cwd.work_tree)))
        directory = cwd.work_tree
    else:
        directory = Path(cwd)
    try:
        proc = run_in_group(
            ["git", *args],
            cwd=directory,
            env=git_env(extra, config),
            input_text=stdin,
            timeout=timeout,
            text=text,
            errors="surrogateescape" if text else None,
        )
    except subprocess.TimeoutExpired as exc:
        raise GitError(args, -1, f"timed out after {timeout:.0f}s") from exc
    except OSError as exc:
        raise GitError(args, -1, str(exc)) from exc
    if check and proc.returncode != 0:
        err = proc.stderr or proc.stdout
        raise GitError(args, proc.returncode, err if isinstance(err, str) else err.decode(errors="replace"))
    return proc


def out(args: Sequence[str], cwd: Where, **kw: object) -> str:
    return git(args, cwd, **kw).stdout.strip()  # type: ignore[arg-type]


def has_identity(cwd: Where) -> bool:
    return bool(git(["config", "user.email"], cwd, check=False).stdout.strip())


DEFAULT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Orchestrate",
    "GIT_AUTHOR_EMAIL": "orchestrate@localhost",
    "GIT_COMMITTER_NAME": "Orchestrate",
    "GIT_COMMITTER_EMAIL": "orchestrate@localhost",
}


def identity_env(cwd: Where) -> dict[str, str]:
    """An author for commits when neither the repository's config nor the environment names one."""
    if has_identity(cwd) or os.environ.get("GIT_AUTHOR_EMAIL"):
        return {}
    return dict(DEFAULT_IDENTITY)


def commit_all(cwd: Where, message: str, paths: Sequence[str] = ()) -> str | None:
    """Stage everything (respecting .gitignore), or only `paths` (pathspecs relative to the work tree), and
    commit; returns the new sha, or None if nothing changed."""
    git(["add", "-A", "--", *paths], cwd)
    if git(["diff", "--cached", "--quiet", "--no-ext-diff"], cwd, check=False).returncode == 0:
        return None
    git(["commit", "-q", "--no-verify", "-F", "-"], cwd, input_text=message, env=identity_env(cwd))
    return out(["rev-parse", "HEAD"], cwd)


def changed_files(cwd: Where, base: str, head: str = "HEAD") -> list[str]:
    """Paths that differ between the merge base of `base` and `head` (the branch's own changes)."""
    raw = git_bytes(["diff", "--name-only", "--no-ext-diff", "--no-textconv", "-z", f"{base}...{head}", "--"], cwd)
    return sorted(p.decode(errors="replace") for p in raw.split(b"\0") if p)


def raw_diff(cwd: Where, base: str, head: str = "HEAD") -> bytes:
    """`git diff --raw` of the branch's own changes: modes, blob ids and every touched path, renames split."""
    return git_bytes(
        ["diff", "--raw", "-z", "--no-renames", "--no-abbrev", "--no-ext-diff", "--no-textconv", f"{base}...{head}"],
        cwd,
    )


def blob_text(cwd: Where, sha: str, limit: int = 4096) -> str | None:
    """The first bytes of a blob as text (a symlink's target), or None when it cannot be read."""
    proc = git(["cat-file", "blob", sha], cwd, check=False)
    return proc.stdout[:limit] if proc.returncode == 0 else None
