"""Which changes a config lets the agent make: the one place that answers it.

Pure functions over data (no git calls, no Celery). The caller lists the branch's changes with

    git diff --raw -z --no-renames --no-abbrev BASE...HEAD

parses them with `parse_raw_diff`, and passes them to `check_changes` with a `read_link` callback that returns
a symlink's target (the caller reads the blob, e.g. `git cat-file blob <new_sha>`). `check_permissions` is the
same path rules for a plain list of paths.

The rules, for every changed path (added, modified, deleted or type-changed):

- it must match `permissions.write` (gitignore-style globs, case-sensitive);
- it must not match `permissions.deny_write`, compared case-insensitively (`.GitHub/workflows/x.yml` is
  `.github/workflows/x.yml` on a case-insensitive checkout), and a path counts as denied when anything inside
  it would be (a file or symlink named `.github` is denied by `.github/**`);
- a gitlink (submodule entry, mode 160000) is always denied;
- a symlink (mode 120000) is denied when its target cannot be read, is absolute (`/…`, `\\…`, `C:…`),
  leaves the repository once joined with the link's directory and normalised (`\\` read as `/`), lands on
  or inside a denied path or on a directory above one (`deny_write` patterns that name a directory, like
  `config/prod/**`), lands on a directory enclosing the link (the repository root included: every path
  would be reachable again through it), or climbs with `..` after a name (`a/../x`: if `a` is itself a
  symlink the lexical answer is wrong).

The symlink rules are lexical: a target is not resolved through other symlinks, so a link whose target
descends through a symlink already in the base tree is judged by the path as written.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import pathspec

from orchestration.config import Permissions

MODE_NONE = "000000"
MODE_SYMLINK = "120000"
MODE_GITLINK = "160000"
ZERO_SHA = "0" * 40

OUTSIDE_WRITE = "outside write"
DENY_WRITE = "deny_write"
GITLINK = "gitlink"
SYMLINK_UNREADABLE = "symlink unreadable"
SYMLINK_LEAVES = "symlink leaves the repository"
SYMLINK_DENIED = "symlink into deny_write"
SYMLINK_ENCLOSING = "symlink to an enclosing directory"
SYMLINK_CLIMBS = "symlink climbs after a name"

# `:old_mode new_mode old_sha new_sha STATUS` — STATUS is a letter, with a score for copies and renames.
_HEADER = re.compile(r":([0-7]{6}) ([0-7]{6}) ([0-9a-f]+) ([0-9a-f]+) ([A-Z])([0-9]{0,3})")
# Python's `.` and `$` treat "\n" specially, and pathspec's regexes use both; git paths never hold NUL and a
# config pattern (one per line) never holds "\n", so NUL stands in for it as an ordinary non-slash character.
_NEWLINE_STANDIN = "\0"
_NO_SEPARATORS: tuple[str, ...] = ()
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:")
_GLOB = re.compile(r"[*?\[\\]")


@dataclass(frozen=True)
class Change:
    """One entry of the branch's diff: a path and what happened to it.

    `status` is git's letter (A added, M modified, D deleted, T type changed, …); modes are git's 6-digit
    modes (`000000` for none, `120000` symlink, `160000` gitlink); `new_sha` is the blob (or, for a gitlink,
    commit) id after the change.
    """

    path: str
    status: str
    old_mode: str
    new_mode: str
    new_sha: str

    @classmethod
    def parse_raw_diff(cls, raw: bytes | str) -> list[Change]:
        """Same as the module's `parse_raw_diff`."""
        return parse_raw_diff(raw)


@dataclass(frozen=True)
class Denied:
    """A changed path the config does not allow, and why (short reason words, comma-separated)."""

    path: str
    why: str


def parse_raw_diff(raw: bytes | str) -> list[Change]:
    """The changes listed by `git diff --raw -z --no-renames --no-abbrev BASE...HEAD`.

    With `-z` and `--no-renames` every entry is `:old_mode new_mode old_sha new_sha STATUS\\0path\\0`, and the
    path is verbatim (no quoting), so newlines, spaces, unicode and leading dashes come through as they are.
    Bytes are decoded as UTF-8, undecodable bytes replaced. Never raises: a malformed entry is skipped and
    parsing resumes at the next header. Should a rename or copy entry appear anyway (`STATUS\\0src\\0dst\\0`),
    both paths are returned, the source with no new mode, so a move out of a denied path still counts.
    """
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes | bytearray) else str(raw)
    tokens = text.split("\0")
    changes: list[Change] = []
    i = 0
    while i < len(tokens):
        header = _HEADER.fullmatch(tokens[i])
        i += 1
        if header is None:
            continue
        old_mode, new_mode, _old_sha, new_sha, status, _score = header.groups()
        two_paths = status in ("R", "C")
        wanted = 2 if two_paths else 1
        paths = tokens[i : i + wanted]
        if len(paths) < wanted or not all(paths):
            continue  # resume the scan at the token after the header
        i += wanted
        if two_paths:
            changes.append(Change(paths[0], status, old_mode, MODE_NONE, ZERO_SHA))
        changes.append(Change(paths[-1], status, old_mode, new_mode, new_sha))
    return changes


class _Rules:
    """A config's permissions compiled once: `write` as given, `deny_write` lower-cased."""

    def __init__(self, perms: Permissions) -> None:
        self._write = pathspec.GitIgnoreSpec.from_lines(perms.write)
        deny = [p.lower() for p in perms.deny_write]
        self._deny = pathspec.GitIgnoreSpec.from_lines(deny)
        self._deny_dirs = {d for d in map(_literal_dir, deny) if d}

    def writable(self, path: str) -> bool:
        return self._write.match_file(_matchable(path), separators=_NO_SEPARATORS)

    def denied(self, path: str) -> bool:
        """`path`, or anything inside it, matches `deny_write` (case-insensitively)."""
        p = _matchable(path.lower())
        return self._deny.match_file(p, separators=_NO_SEPARATORS) or self._deny.match_file(
            p + "/x", separators=_NO_SEPARATORS
        )

    def above_denied(self, path: str) -> bool:
        """`path` is a directory above one a `deny_write` pattern names literally (`config` for `config/prod/**`)."""
        p = path.lower()
        return any(d.startswith(p + "/") for d in self._deny_dirs)

    def path_reasons(self, path: str) -> list[str]:
        reasons = []
        if not self.writable(path):
            reasons.append(OUTSIDE_WRITE)
        if self.denied(path):
            reasons.append(DENY_WRITE)
        return reasons


def _matchable(path: str) -> str:
    return path.replace("\n", _NEWLINE_STANDIN)


def _literal_dir(pattern: str) -> str | None:
    """The directory an anchored pattern starts with, up to its first wildcard (`a/b` for `a/b/*.key`);
    None for a negation or a pattern that matches at any depth."""
    if pattern.startswith(("!", "#")):
        return None
    body = pattern.rstrip("/")
    if body.startswith("/"):
        body = body[1:]
    elif "/" not in body:
        return None  # `name` matches at any depth
    parts = body.split("/")
    literal: list[str] = []
    for part in parts[:-1]:
        if _GLOB.search(part) or part in ("", ".", ".."):
            break
        literal.append(part)
    return "/".join(literal) or None


def _link_reason(change: Change, target: str | None, rules: _Rules) -> str | None:
    """Why a symlink is denied, or None when its target stays inside the repository and off denied paths."""
    if not target or "\0" in target:
        return SYMLINK_UNREADABLE
    target = target.replace("\\", "/")  # a Windows checkout reads a backslash as a separator
    if target.startswith("/") or _WINDOWS_DRIVE.match(target):
        return SYMLINK_LEAVES
    landed = posixpath.normpath(posixpath.join(posixpath.dirname(change.path), target))
    if landed == ".." or landed.startswith("../"):
        return SYMLINK_LEAVES
    if rules.denied(landed) or rules.above_denied(landed):
        return SYMLINK_DENIED
    if landed == "." or change.path.startswith(landed + "/"):
        return SYMLINK_ENCLOSING
    if ".." in target.split("/")[_leading_ups(target) :]:
        return SYMLINK_CLIMBS
    return None


def _leading_ups(target: str) -> int:
    """How many of the target's first components are `..` (or `.` / empty, which do not move)."""
    parts = target.split("/")
    n = 0
    while n < len(parts) and parts[n] in ("..", ".", ""):
        n += 1
    return n


def _read(read_link: Callable[[Change], str | None], change: Change) -> str | None:
    try:
        return read_link(change)
    except Exception:  # an unreadable target denies the link; the check itself never fails
        return None


def check_changes(
    changes: Sequence[Change],
    perms: Permissions,
    read_link: Callable[[Change], str | None],
) -> list[Denied]:
    """The changes `perms` does not allow, one `Denied` per path in first-seen order (empty: all allowed).

    `read_link` returns the target of a change whose new mode is 120000 (None when it cannot be read; an
    exception counts as None). See the module docstring for the rules.
    """
    rules = _Rules(perms)
    reasons: dict[str, list[str]] = {}
    for change in changes:
        why = rules.path_reasons(change.path)
        if change.new_mode == MODE_GITLINK:
            why.append(GITLINK)
        elif change.new_mode == MODE_SYMLINK:
            link = _link_reason(change, _read(read_link, change), rules)
            if link:
                why.append(link)
        if why:
            _add(reasons.setdefault(change.path, []), why)
    return [Denied(path, ", ".join(why)) for path, why in reasons.items()]


def check_permissions(files: Sequence[str], perms: Permissions) -> list[str]:
    """Paths the config does not let the agent change: outside `write` or inside `deny_write`.

    Gitignore-style globs (pathspec), so `**` covers every path and `.github/**` covers `.github/workflows/x`;
    `deny_write` is compared case-insensitively and also covers a path with something denied inside it (a
    file named `.github`). Plain paths only: symlinks and gitlinks need `check_changes`.
    """
    rules = _Rules(perms)
    bad: dict[str, None] = {}
    for f in files:
        if f not in bad and rules.path_reasons(f):
            bad[f] = None
    return list(bad)


def _add(into: list[str], items: Iterable[str]) -> None:
    for item in items:
        if item not in into:
            into.append(item)
