"""One git worktree per cycle, from a private clone under ORCH_STATE_DIR, and the guard of its admin dir.

The agent can write its work tree, `.git` file included. So:
- worktrees never come from the user's repository: each workspace has a private clone (`mirrors/<id>`),
  also for a local path, whose repository only serves as where the clone fetches from (its upstream
  remote is copied; without one, the local repository itself becomes the clone's remote);
- the base is pinned as a commit id before the agent starts, never looked up by name again;
- before the agent starts, the admin dir's config, hooks, info, alternates and the worktree's own admin
  files (and the work tree's `.git` file) are recorded; before every later git call they are compared,
  and anything changed is put back and reported as a violation (the cycle then ends `policy_denied`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from orchestration import git
from orchestration.config import WorkspaceConfig, slugify
from orchestration.files import write_atomic
from orchestration.git import GitError

MAX_GUARDED_BYTES = 1 << 20  # a guarded file larger than this counts as changed without being read whole
LOW_SPACE_BYTES = 1 << 20  # less free space than this where git failed to write: the likely cause, said so


class WorktreeError(Exception):
    pass


class IntegrityError(WorktreeError):
    """The admin dir could not be put back as it was: no git call may run on this worktree."""


# -- the private clone --------------------------------------------------------------------------------


def _private_dir(path: Path, mode: int = 0o700) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    return path


def repo_dir(cfg: WorkspaceConfig, state_dir: Path) -> Path:
    """This worker's private clone of the workspace, made on first use and fetched on every later one."""
    mirror = _private_dir(state_dir / "mirrors") / cfg.id
    source = cfg.workspace.repo if cfg.workspace.is_url else str(_local_repo(cfg))
    try:
        if not (mirror / ".git").is_dir():
            _clone(cfg, source, mirror)
        if not cfg.workspace.is_url:
            _point_remote(mirror, cfg.workspace.remote, _upstream_url(Path(source), cfg.workspace.remote) or source)
        git.git(
            ["fetch", "--quiet", "--prune", "--no-tags", "--", cfg.workspace.remote], _in_clone(mirror), timeout=600
        )
    except GitError as exc:
        why = f"{exc.stderr[-300:]}{disk_trouble(mirror.parent)}"
        raise WorktreeError(f"cannot clone or fetch {cfg.workspace.repo}: {why}") from exc
    return mirror


def disk_trouble(*paths: Path) -> str:
    """Why writing under `paths` may have failed, as a note to append to an error (else ""): git does not
    always say that its disk is full (`couldn't write '...lock'`)."""
    for path in paths:
        try:
            st = os.statvfs(path)
        except OSError:
            continue
        if st.f_bavail * st.f_frsize < LOW_SPACE_BYTES:
            return f" (no space left on the device of {path}: {st.f_bavail * st.f_frsize} bytes free)"
    return ""


def _in_clone(mirror: Path) -> git.Tree:
    """The private clone itself, its admin dir named (git never looks for one)."""
    return git.Tree(work_tree=mirror, git_dir=mirror / ".git")


def _local_repo(cfg: WorkspaceConfig) -> Path:
    path = cfg.repo_path().resolve()
    if not (path / ".git").exists() and not (path / "HEAD").exists():
        raise WorktreeError(f"workspace.repo {str(path)!r} is not a git repository")
    return path


def _clone(cfg: WorkspaceConfig, source: str, mirror: Path) -> None:
    """Clone into a temporary name, then move it in place: a half-made clone is never used."""
    partial = mirror.with_name(mirror.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    # --no-hardlinks: objects written here must never be shared with the user's repository.
    args = ["clone", "--quiet", "--no-checkout", "--no-hardlinks", "--origin", cfg.workspace.remote]
    git.git([*args, "--", source, str(partial)], mirror.parent, timeout=600)
    hooks = partial / ".git" / "hooks"
    shutil.rmtree(hooks, ignore_errors=True)
    hooks.mkdir()
    for key, value in _identity(None if cfg.workspace.is_url else Path(source)).items():
        git.git(["config", key, value], _in_clone(partial))
    partial.rename(mirror)


def _identity(source: Path | None) -> dict[str, str]:
    """The author the user would commit as (their repository's, else their global git config), read once at
    clone time: orchestrate's own git calls never read global config afterwards. Reading config runs nothing."""
    found: dict[str, str] = {}
    where = ["-C", str(source)] if source else []
    for key in ("user.name", "user.email"):
        try:
            proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
                ["git", *where, "config", "--get", key],
                capture_output=True,
                text=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        value = proc.stdout.strip()
        if value and "\n" not in value and not value.startswith("-"):
            found[key] = value
    return found


def _upstream_url(source: Path, remote: str) -> str | None:
    """The URL of the user's repository's own remote of that name, if it has one (relative paths resolved)."""
    admin = source / ".git" if (source / ".git").exists() else source
    proc = git.git(["config", "--get", f"remote.{remote}.url"], source, check=False, env={"GIT_DIR": str(admin)})
    url = proc.stdout.strip()
    if not url or url.startswith("-") or "\n" in url:
        return None
    if re.match(r"^([a-z][a-z0-9+.-]*://|[\w.-]+@[\w.-]+:)", url) or os.path.isabs(url):
        return url
    return str((source / url).resolve())


def _point_remote(mirror: Path, remote: str, url: str) -> None:
    current = git.git(["config", "--get", f"remote.{remote}.url"], _in_clone(mirror), check=False).stdout.strip()
    if current != url:
        git.git(["config", f"remote.{remote}.url", url], _in_clone(mirror))
        git.git(["config", f"remote.{remote}.fetch", f"+refs/heads/*:refs/remotes/{remote}/*"], _in_clone(mirror))


def base_commit(repo: Path, remote: str, base_branch: str) -> str:
    """The base branch as a commit id: `<remote>/<base>` when the remote has it (fetched by `repo_dir`),
    else the clone's own branch of that name. Pinned here, before the agent runs."""
    for ref in (f"refs/remotes/{remote}/{base_branch}", f"refs/heads/{base_branch}"):
        proc = git.git(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"], _in_clone(repo), check=False
        )
        if proc.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", proc.stdout.strip()):
            return proc.stdout.strip()
    raise WorktreeError(f"base branch {base_branch!r} exists neither on {remote!r} nor in {repo}")


def branch_name(prefix: str, stamp: str, title: str, cycle_id: str, issue: int | None = None) -> str:
    """`<prefix><stamp>-[issue-N-]<title slug>-<cycle>`: unique per cycle, readable, and the issue a cycle
    works on is in its name."""
    if issue is not None:
        title = re.sub(rf"^#{issue}\b:?\s*", "", title)
    name = f"{prefix}{stamp}-{f'issue-{issue}-' if issue is not None else ''}{slugify(title, 40)}-{cycle_id[-6:]}"
    name = re.sub(r"[~^:?*\[\\\s]+", "-", name).replace("..", ".").strip("/.")
    return name


# -- the guard ----------------------------------------------------------------------------------------

Snapshot = dict[str, dict[str, str | int]]


def _read(path: Path) -> dict[str, str | int] | None:
    """One node as the guard sees it, without following links."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return {"kind": "link", "target": os.readlink(path)}
    if stat.S_ISDIR(st.st_mode):
        return {"kind": "dir", "mode": stat.S_IMODE(st.st_mode)}
    if stat.S_ISREG(st.st_mode):
        if st.st_size > MAX_GUARDED_BYTES:
            return {"kind": "file", "sha": f"oversized:{st.st_size}"}
        data = path.read_bytes()
        return {
            "kind": "file",
            "mode": stat.S_IMODE(st.st_mode),
            "sha": hashlib.sha256(data).hexdigest(),
            "data": base64.b64encode(data).decode(),
        }
    return {"kind": "other"}


def _walk(path: Path, label: str, found: Snapshot) -> None:
    node = _read(path)
    if node is None:
        return
    found[label] = node
    if node["kind"] == "dir":
        for child in sorted(os.listdir(path)):
            _walk(path / child, f"{label}/{child}", found)


@dataclass
class Checkout:
    """A cycle's worktree: where its files are, the admin dir our git calls use, and the guard's record."""

    cycle_id: str
    path: Path
    git_dir: Path  # <clone>/.git/worktrees/<name>
    common_dir: Path  # <clone>/.git
    baseline: Snapshot = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def roots(self) -> list[tuple[Path, str]]:
        c, a = self.common_dir, self.git_dir
        return [
            (c / "config", "common/config"),
            (c / "config.worktree", "common/config.worktree"),
            (c / "hooks", "common/hooks"),
            (c / "info", "common/info"),
            (c / "objects" / "info" / "alternates", "common/objects/info/alternates"),
            (c / "objects" / "info" / "http-alternates", "common/objects/info/http-alternates"),
            (c / "commondir", "common/commondir"),
            (a / "config.worktree", "admin/config.worktree"),
            (a / "commondir", "admin/commondir"),
            (a / "gitdir", "admin/gitdir"),
            (a / "info", "admin/info"),
            (self.path / ".git", "tree/.git"),
        ]

    def _path_of(self, label: str) -> Path:
        top, _, rest = label.partition("/")
        base = {"common": self.common_dir, "admin": self.git_dir, "tree": self.path}[top]
        return base / rest

    def snapshot(self) -> Snapshot:
        found: Snapshot = {}
        for path, label in self.roots():
            _walk(path, label, found)
        return found

    @property
    def tree(self) -> git.Tree:
        return git.Tree(work_tree=self.path, git_dir=self.git_dir, check=self.enforce)

    @property
    def common_tree(self) -> git.Tree:
        """The clone itself (for `worktree remove`), under the same guard."""
        return git.Tree(work_tree=self.common_dir.parent, git_dir=self.common_dir, check=self.enforce)

    def changes(self) -> list[str]:
        """Labels of guarded nodes that differ from the record (added, removed or changed)."""
        now = self.snapshot()
        labels = set(now) | set(self.baseline)

        def same(label: str) -> bool:
            a, b = now.get(label), self.baseline.get(label)
            if a is None or b is None:
                return a is b
            return {k: v for k, v in a.items() if k != "data"} == {k: v for k, v in b.items() if k != "data"}

        return sorted(label for label in labels if not same(label))

    def enforce(self) -> None:
        """Puts every changed guarded node back as recorded, and remembers what was changed."""
        changed = self.changes()
        if not changed:
            return
        removed: list[str] = []
        for label in sorted(changed, key=lambda x: x.count("/")):  # shallowest first: never walk into a link
            if any(label.startswith(p + "/") for p in removed):
                continue
            node, path = self.baseline.get(label), self._path_of(label)
            current = _read(path)
            if current is None:
                continue
            if node is None or current["kind"] != node["kind"] or current["kind"] != "dir":
                _remove(path)
                removed.append(label)
        for label in sorted(changed, key=lambda x: x.count("/")):  # shallowest first
            node = self.baseline.get(label)
            if node is not None:
                _restore(self._path_of(label), node)
        for label in changed:
            if label not in self.violations:
                self.violations.append(label)
        left = self.changes()
        if left:
            raise IntegrityError(f"the git admin dir of cycle {self.cycle_id} could not be restored: {left}")

    # -- persistence: the record outlives the stage that made it (publish, the janitor, gc read it) --
    @staticmethod
    def record_path(state_dir: Path, cycle_id: str) -> Path:
        return state_dir / "guards" / f"{cycle_id}.json"

    def save(self, state_dir: Path) -> None:
        _private_dir(state_dir / "guards")
        data = {
            "cycle_id": self.cycle_id,
            "path": str(self.path),
            "git_dir": str(self.git_dir),
            "common_dir": str(self.common_dir),
            "baseline": self.baseline,
            "violations": self.violations,
        }
        target = self.record_path(state_dir, self.cycle_id)
        write_atomic(target, orjson.dumps(data))

    @classmethod
    def load(cls, state_dir: Path, cycle_id: str) -> Checkout | None:
        try:
            data = orjson.loads(cls.record_path(state_dir, cycle_id).read_bytes())
            return cls(
                cycle_id=str(data["cycle_id"]),
                path=Path(data["path"]),
                git_dir=Path(data["git_dir"]),
                common_dir=Path(data["common_dir"]),
                baseline=data["baseline"],
                violations=list(data.get("violations") or []),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def forget(self, state_dir: Path) -> None:
        self.record_path(state_dir, self.cycle_id).unlink(missing_ok=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _restore(path: Path, node: dict[str, str | int]) -> None:
    kind = node["kind"]
    if kind == "dir":
        path.mkdir(exist_ok=True)
        os.chmod(path, int(node["mode"]))
    elif kind == "file" and "data" in node:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, int(node["mode"]))
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64decode(str(node["data"])))
        os.chmod(path, int(node["mode"]))
    elif kind == "link":
        os.symlink(str(node["target"]), path)


# -- worktrees ----------------------------------------------------------------------------------------


def create(repo: Path, state_dir: Path, cycle_id: str, branch: str, base: str) -> Checkout:
    """A new worktree on `branch` at commit `base`, with its guard record written before anyone else runs."""
    existing = Checkout.load(state_dir, cycle_id)
    if existing is not None and existing.path.exists():
        return existing
    root = _private_dir(state_dir / "worktrees", 0o711)  # others may pass through to their own worktree only
    path = root / cycle_id
    git.git(["worktree", "prune"], _in_clone(repo), check=False)
    try:
        git.git(["worktree", "add", "--quiet", "-b", branch, "--", str(path), base], _in_clone(repo))
    except GitError as exc:
        if "already exists" not in exc.stderr:
            raise WorktreeError(f"cannot create worktree: {exc.stderr[-300:]}{disk_trouble(repo, root)}") from exc
        try:
            git.git(["worktree", "add", "--quiet", "--", str(path), branch], _in_clone(repo))
        except GitError as again:
            why = f"{again.stderr[-300:]}{disk_trouble(repo, root)}"
            raise WorktreeError(f"cannot create worktree: {why}") from again
    # Read once, now, while only we have written it; never again.
    text = (path / ".git").read_text().strip()
    admin = Path(text.removeprefix("gitdir:").strip())
    if not admin.is_absolute():
        admin = (path / admin).resolve()
    checkout = Checkout(cycle_id=cycle_id, path=path, git_dir=admin, common_dir=(repo / ".git").resolve())
    checkout.baseline = checkout.snapshot()
    checkout.save(state_dir)
    return checkout


def hand_over(checkout: Checkout, user: str, state_dir: Path) -> None:
    """Gives the work tree (and nothing else) to the agent's OS user; its parents must let that user pass."""
    entry = pwd.getpwnam(user)
    for parent in checkout.path.parents:
        st = parent.stat()
        if not st.st_mode & stat.S_IXOTH and st.st_uid != entry.pw_uid:
            raise WorktreeError(
                f"the agent user {user!r} cannot reach its worktree: {parent} is not searchable by others "
                f"(mode {stat.S_IMODE(st.st_mode):o}); put ORCH_STATE_DIR where every parent allows `x` for others"
            )
    for dirpath, dirnames, filenames in os.walk(checkout.path):
        os.lchown(dirpath, entry.pw_uid, entry.pw_gid)
        for name in [*dirnames, *filenames]:
            os.lchown(os.path.join(dirpath, name), entry.pw_uid, entry.pw_gid)
    checkout.baseline = checkout.snapshot()
    checkout.save(state_dir)


def remove(checkout: Checkout, state_dir: Path) -> None:
    git.git(["worktree", "remove", "--force", "--", str(checkout.path)], checkout.common_tree, check=False)
    if checkout.path.exists():
        shutil.rmtree(checkout.path, ignore_errors=True)
    # The worktree's admin dir is gone now, and with it what the guard watched: prune without it.
    git.git(["worktree", "prune"], _in_clone(checkout.common_dir.parent), check=False)
    checkout.forget(state_dir)


def removal_blocker(checkout: Checkout, remote: str, push_expected: bool) -> str | None:
    """Why this worktree must stay (uncommitted or unpushed work), or None when removing it loses nothing."""
    tree = checkout.tree
    try:
        if git.out(["status", "--porcelain"], tree):
            return "uncommitted changes"
        branch = git.out(["rev-parse", "--abbrev-ref", "HEAD"], tree)
        if not push_expected or branch == "HEAD":
            return None
        if git.git(["remote", "get-url", "--", remote], tree, check=False).returncode != 0:
            return None  # no remote to push to: the branch in the clone holds the work
        # Commits of HEAD that no branch of the remote (as last fetched or pushed) holds: none for a branch
        # pushed whole, and none for one that never got a commit of its own (a cycle that ended early).
        ahead = git.out(["rev-list", "--count", "HEAD", "--not", f"--remotes={remote}"], tree)
        if ahead in ("", "0"):
            return None
        remote_ref = f"refs/remotes/{remote}/{branch}"
        if git.git(["rev-parse", "--verify", "--quiet", remote_ref], tree, check=False).returncode != 0:
            return "branch not pushed"
        return f"{ahead} commit(s) not pushed"
    except GitError as exc:
        return f"git: {exc.stderr[-120:]}"
    except IntegrityError as exc:
        return str(exc)


def remove_if_safe(checkout: Checkout, state_dir: Path, remote: str, push_expected: bool) -> str | None:
    """Removes the worktree when nothing would be lost; returns what kept it otherwise."""
    blocker = removal_blocker(checkout, remote, push_expected)
    if blocker is None:
        try:
            remove(checkout, state_dir)
        except (GitError, IntegrityError) as exc:
            return f"git: {str(exc)[-120:]}"
    return blocker
