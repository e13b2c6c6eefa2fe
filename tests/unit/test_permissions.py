"""The permission check on real git repositories: the agent's change is a real commit on a branch, listed with
the same `git diff --raw` command the publish stage runs, and symlink targets are read from the blobs."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestration.config import Permissions
from orchestration.permissions import (
    Change,
    Denied,
    check_changes,
    check_permissions,
    parse_raw_diff,
)
from tests.helpers import make_repo, sh

DIFF = ["git", "diff", "--raw", "-z", "--no-renames", "--no-abbrev", "main...HEAD"]
SHA = "a" * 40


def git_bytes(args: list[str], cwd: Path) -> bytes:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True).stdout  # noqa: S603


def write(root: Path, rel: str, text: str = "x\n") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def link(root: Path, rel: str, target: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


class Repo:
    """A repository with a committed base on main and the agent's branch checked out."""

    def __init__(self, tmp: Path, base: Callable[[Path], None] | None = None) -> None:
        self.work, _ = make_repo(tmp)
        if base is not None:
            base(self.work)
            sh(["git", "add", "-A"], self.work)
            sh(["git", "commit", "-q", "-m", "base"], self.work)
        sh(["git", "checkout", "-q", "-b", "agent"], self.work)

    def commit(self, change: Callable[[Path], object], *, stage_all: bool = True) -> list[Change]:
        change(self.work)
        if stage_all:
            sh(["git", "add", "-A"], self.work)
        sh(["git", "commit", "-q", "-m", "agent change"], self.work)
        return parse_raw_diff(git_bytes(DIFF, self.work))

    def read_link(self, change: Change) -> str | None:
        proc = subprocess.run(  # noqa: S603
            ["git", "cat-file", "blob", change.new_sha], cwd=self.work, capture_output=True, check=False
        )
        return proc.stdout.decode("utf-8", errors="replace") if proc.returncode == 0 else None

    def check(self, changes: list[Change], perms: Permissions | None = None) -> list[Denied]:
        return check_changes(changes, perms or Permissions(), self.read_link)


def denied_paths(denied: list[Denied]) -> dict[str, str]:
    return {d.path: d.why for d in denied}


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path)


# --- parsing -------------------------------------------------------------------------------------------


def test_parse_reads_statuses_modes_and_shas(tmp_path: Path) -> None:
    def base(w: Path) -> None:
        write(w, "gone.txt")
        write(w, "typed")

    r = Repo(tmp_path, base)

    def change(w: Path) -> None:
        write(w, "app.py", "changed\n")
        write(w, "new.txt")
        (w / "gone.txt").unlink()
        (w / "typed").unlink()
        os.symlink("new.txt", w / "typed")

    changes = {c.path: c for c in r.commit(change)}
    assert sorted(changes) == ["app.py", "gone.txt", "new.txt", "typed"]
    assert (changes["app.py"].status, changes["app.py"].old_mode, changes["app.py"].new_mode) == (
        "M",
        "100644",
        "100644",
    )
    assert (changes["new.txt"].status, changes["new.txt"].old_mode) == ("A", "000000")
    assert (changes["gone.txt"].status, changes["gone.txt"].new_mode) == ("D", "000000")
    assert (changes["typed"].status, changes["typed"].new_mode) == ("T", "120000")
    assert r.read_link(changes["typed"]) == "new.txt"
    assert len(changes["app.py"].new_sha) == 40
    assert r.check(list(changes.values())) == []


def test_parse_odd_path_names(repo: Repo) -> None:
    names = ["-rf\nnew line.txt", "dir with space/ünï ✓.md", "--output=x", "tab\there", "back\\slash"]

    def change(w: Path) -> None:
        for n in names:
            write(w, n)

    changes = repo.commit(change)
    assert sorted(c.path for c in changes) == sorted(names)
    assert all(c.status == "A" for c in changes)
    assert repo.check(changes) == []


def test_parse_accepts_text_and_skips_garbage() -> None:
    good = f":100644 100644 {SHA} {SHA} M\0a.py\0"
    raw = f"junk\0{good}:100644 nonsense\0b.py\0{good.replace('a.py', 'c.py')}:100644 100644 {SHA} {SHA} A\0"
    assert [c.path for c in parse_raw_diff(raw)] == ["a.py", "c.py"]
    assert parse_raw_diff(raw.encode()) == parse_raw_diff(raw)
    assert parse_raw_diff(b"") == []
    assert parse_raw_diff(b"\xff\xfe:100644\0") == []


def test_parse_rename_entry_keeps_both_paths() -> None:
    raw = f":100644 100644 {SHA} {SHA} R100\0.github/workflows/ci.yml\0ci.yml\0"
    changes = parse_raw_diff(raw)
    assert [(c.path, c.new_mode) for c in changes] == [(".github/workflows/ci.yml", "000000"), ("ci.yml", "100644")]
    assert denied_paths(check_changes(changes, Permissions(), lambda c: None)) == {
        ".github/workflows/ci.yml": "deny_write"
    }


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_parse_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    changes = parse_raw_diff(raw)
    assert all(isinstance(c, Change) and c.path for c in changes)


_HEADERS = st.builds(
    lambda om, nm, status: f":{om} {nm} {SHA} {SHA} {status}".encode(),
    st.sampled_from(["000000", "100644", "100755", "120000", "160000"]),
    st.sampled_from(["000000", "100644", "100755", "120000", "160000"]),
    st.sampled_from(["A", "M", "D", "T", "R100", "C050", "X"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_HEADERS, st.binary(max_size=30)), max_size=12))
def test_parse_never_raises_on_mangled_entries(tokens: list[bytes]) -> None:
    parse_raw_diff(b"\0".join(tokens))
    parse_raw_diff(b"\0".join(tokens).decode("utf-8", errors="replace"))


# --- what the agent may change --------------------------------------------------------------------------


def test_plain_edit_is_allowed(repo: Repo) -> None:
    changes = repo.commit(lambda w: write(w, "app.py", "def add(a, b):\n    return b + a\n"))
    assert [c.path for c in changes] == ["app.py"]
    assert repo.check(changes) == []


def test_gitignore_stays_writable(repo: Repo) -> None:
    changes = repo.commit(lambda w: write(w, ".gitignore", "*.pyc\n"))
    assert repo.check(changes) == []


def test_harmless_symlink_is_allowed(repo: Repo) -> None:
    def change(w: Path) -> None:
        write(w, "docs/v2/index.md")
        link(w, "docs/latest", "v2")

    changes = repo.commit(change)
    assert {c.path: c.new_mode for c in changes}["docs/latest"] == "120000"
    assert repo.check(changes) == []


def test_gitattributes_is_denied(repo: Repo) -> None:
    changes = repo.commit(lambda w: write(w, ".gitattributes", "*.py filter=evil diff=evil\n"))
    assert denied_paths(repo.check(changes)) == {".gitattributes": "deny_write"}


def test_nested_gitattributes_is_denied(repo: Repo) -> None:
    changes = repo.commit(lambda w: write(w, "src/x\ny/.gitattributes", "* filter=evil\n"))
    assert denied_paths(repo.check(changes)) == {"src/x\ny/.gitattributes": "deny_write"}


def test_gitmodules_with_attacker_url_is_denied(repo: Repo) -> None:
    def change(w: Path) -> None:
        write(w, ".gitmodules", '[submodule "lib"]\n\tpath = vendor/lib\n\turl = https://evil.example/lib.git\n')
        sh(["git", "add", ".gitmodules"], w)
        sh(["git", "update-index", "--add", "--cacheinfo", f"160000,{SHA},vendor/lib"], w)

    changes = repo.commit(change, stage_all=False)
    assert denied_paths(repo.check(changes)) == {".gitmodules": "deny_write", "vendor/lib": "gitlink"}


def test_gitlink_is_denied(repo: Repo) -> None:
    head = sh(["git", "rev-parse", "HEAD"], repo.work)
    changes = repo.commit(
        lambda w: sh(["git", "update-index", "--add", "--cacheinfo", f"160000,{head},vendor/lib"], w),
        stage_all=False,
    )
    assert [(c.path, c.status, c.new_mode, c.new_sha) for c in changes] == [("vendor/lib", "A", "160000", head)]
    assert denied_paths(repo.check(changes)) == {"vendor/lib": "gitlink"}


def test_symlink_named_github_is_denied(repo: Repo) -> None:
    def change(w: Path) -> None:
        write(w, "ci/workflows/x.yml", "on: push\n")
        link(w, ".github", "ci")

    changes = repo.commit(change)
    assert denied_paths(repo.check(changes)) == {".github": "deny_write"}


@pytest.mark.parametrize("path", [".GitHub/workflows/x.yml", ".GITHUB/x", ".github/WORKFLOWS/x"])
def test_deny_write_ignores_case(repo: Repo, path: str) -> None:
    changes = repo.commit(lambda w: write(w, path, "on: push\n"))
    assert denied_paths(repo.check(changes)) == {path: "deny_write"}


@pytest.mark.parametrize(
    ("where", "target", "why"),
    [
        ("link", "../outside", "symlink leaves the repository"),
        ("docs/link", "../../outside", "symlink leaves the repository"),
        ("link", "/etc/passwd", "symlink leaves the repository"),
        ("docs/link", "..\\..\\outside", "symlink leaves the repository"),
        ("link", "C:\\Windows", "symlink leaves the repository"),
        ("link", "a/b/../../../x", "symlink leaves the repository"),
        ("link", ".github/workflows", "symlink into deny_write"),
        ("docs/ci", "../.GitHub/workflows/x.yml", "symlink into deny_write"),
        ("docs/attrs", "../.gitattributes", "symlink into deny_write"),
        ("docs/up", "..", "symlink to an enclosing directory"),
        ("docs/self", ".", "symlink to an enclosing directory"),
        ("docs/link", "a/../x", "symlink climbs after a name"),
    ],
)
def test_symlink_targets(repo: Repo, where: str, target: str, why: str) -> None:
    changes = repo.commit(lambda w: link(w, where, target))
    assert denied_paths(repo.check(changes)) == {where: why}


def test_symlink_above_a_denied_directory(repo: Repo) -> None:
    perms = Permissions(deny_write=["config/prod/**"])
    changes = repo.commit(lambda w: link(w, "docs/cfg", "../config"))
    assert denied_paths(repo.check(changes, perms)) == {"docs/cfg": "symlink into deny_write"}
    assert repo.check(changes) == []


def test_unreadable_symlink_is_denied(repo: Repo) -> None:
    changes = repo.commit(lambda w: link(w, "docs/latest", "v2"))

    def boom(change: Change) -> str | None:
        raise OSError("cannot read")

    for read_link in (lambda c: None, boom):
        assert denied_paths(check_changes(changes, Permissions(), read_link)) == {"docs/latest": "symlink unreadable"}


def test_path_outside_narrowed_write_is_denied(repo: Repo) -> None:
    def change(w: Path) -> None:
        write(w, "src/ok.py")
        write(w, "setup.py")
        write(w, "SRC/case.py")

    changes = repo.commit(change)
    perms = Permissions(write=["src/**"])
    assert denied_paths(repo.check(changes, perms)) == {"setup.py": "outside write", "SRC/case.py": "outside write"}


def test_deletion_inside_github_is_denied(tmp_path: Path) -> None:
    r = Repo(tmp_path, lambda w: write(w, ".github/workflows/ci.yml", "on: push\n"))
    changes = r.commit(lambda w: (w / ".github/workflows/ci.yml").unlink())
    assert [(c.path, c.status) for c in changes] == [(".github/workflows/ci.yml", "D")]
    assert denied_paths(r.check(changes)) == {".github/workflows/ci.yml": "deny_write"}


def test_rename_out_of_github_is_denied(tmp_path: Path) -> None:
    r = Repo(tmp_path, lambda w: write(w, ".github/workflows/ci.yml", "on: push\n" * 20))
    changes = r.commit(lambda w: (w / ".github/workflows/ci.yml").rename(w / "ci.yml"))
    assert sorted((c.path, c.status) for c in changes) == [(".github/workflows/ci.yml", "D"), ("ci.yml", "A")]
    assert denied_paths(r.check(changes)) == {".github/workflows/ci.yml": "deny_write"}


def test_several_reasons_for_one_path(repo: Repo) -> None:
    changes = repo.commit(lambda w: link(w, ".github", "/etc"))
    perms = Permissions(write=["src/**"])
    assert repo.check(changes, perms) == [Denied(".github", "outside write, deny_write, symlink leaves the repository")]


# --- the plain-path wrapper -----------------------------------------------------------------------------


def test_check_permissions_plain_paths() -> None:
    files = ["a.py", ".GitHub/workflows/x.yml", ".github", ".gitmodules", "sub/.gitattributes", ".gitignore", "a.py"]
    assert check_permissions(files, Permissions()) == [
        ".GitHub/workflows/x.yml",
        ".github",
        ".gitmodules",
        "sub/.gitattributes",
    ]
    assert check_permissions(["docs/a.md\n", "docs/a.md"], Permissions(write=["docs/*.md"])) == ["docs/a.md\n"]
    assert check_permissions(["secrets/k", "SECRETS/k", "src/a.py"], Permissions(deny_write=["Secrets/**"])) == [
        "secrets/k",
        "SECRETS/k",
    ]
