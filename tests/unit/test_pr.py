"""The publish stage on real git repositories (bare remote, clone, worktree) with a recording fake gh."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestration import pr as pr_mod
from orchestration.config import Permissions, WorkspaceConfig
from orchestration.git import GitError, Tree, git
from orchestration.models import AgentResult, AgentTokens, Decision, Status
from orchestration.pr import RetryPolicy, check_permissions, publish, render_body
from tests.fixtures.fake_gh import install_fake_gh, read_calls, read_state

BRANCH = "agent/orchestration/20261125-0130-raise-coverage"
CYCLE = "c-20261125-0130-abcd"
NASTY = "Fix \"quoted\" `ticks` and $(rm -rf /) and 'single' — ünïcødé ✓ 🚀\nsecond line\\n ${HOME} ```"


def sh(*args: str, cwd: Path | None = None, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check)  # noqa: S603
    return proc.stdout.strip()


@dataclass
class Env:
    tmp: Path
    remote: Path
    clone: Path
    wt: Path
    gh: Path
    state: Path
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))

    def calls(self, *prefix: str) -> list[dict[str, Any]]:
        return [c for c in read_calls(self.state) if c["argv"][: len(prefix)] == list(prefix)]

    def remote_head(self) -> str | None:
        ref = f"refs/heads/{BRANCH}"
        head = sh("--git-dir", str(self.remote), "rev-parse", "--verify", "-q", ref, check=False)
        return head or None

    def write(self, rel: str, text: str = "x = 1\n") -> None:
        path = self.wt / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def make_env(tmp: Path, mode: str = "ok") -> Env:
    remote, clone, wt = tmp / "remote.git", tmp / "clone", tmp / "wt"
    sh("init", "-q", "--bare", "-b", "main", str(remote))
    sh("clone", "-q", str(remote), str(clone))
    sh("config", "user.name", "Test User", cwd=clone)
    sh("config", "user.email", "test@example.com", cwd=clone)
    sh("checkout", "-q", "-b", "main", cwd=clone)
    (clone / "README.md").write_text("hello\n")
    (clone / ".github" / "workflows").mkdir(parents=True)
    (clone / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    sh("add", "-A", cwd=clone)
    sh("commit", "-q", "-m", "initial", cwd=clone)
    sh("push", "-q", "origin", "main", cwd=clone)
    sh("worktree", "add", "-q", "-b", BRANCH, str(wt), "origin/main", cwd=clone)
    gh = install_fake_gh(tmp / "bin", tmp / "ghstate", mode)
    return Env(tmp, remote, clone, wt, gh, tmp / "ghstate")


# Retries happen at once: every publish here gets a policy without pauses.
NO_BACKOFF = RetryPolicy(push_backoff_s=(0.0,), create_backoff_s=0.0)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


def config(env: Env, **sections: dict[str, Any]) -> WorkspaceConfig:
    return WorkspaceConfig.model_validate({"workspace": {"repo": str(env.clone)}, **sections})


def decision(title: str = "Raise coverage of billing", task: str = "Add tests for billing.") -> Decision:
    return Decision(
        task=task,
        title=title,
        agent="claude-code",
        rationale="Billing has no tests.",
        confidence=0.8,
        source="llm",
        op_hash="abc123",
    )


AGENT = AgentResult(
    status="succeeded",
    exit_code=0,
    num_turns=12,
    cost_usd=0.84,
    tokens=AgentTokens(input=1200, output=340, cached=5000),
    files_changed=["src/x.py"],
)


def run(
    env: Env,
    cfg: WorkspaceConfig | None = None,
    *,
    status: Status = Status.SUCCEEDED,
    dec: Decision | None = None,
    gh: str | None = None,
    deadline: float | None = None,
) -> Any:
    return publish(
        tree=Tree.discover(env.wt),
        branch=BRANCH,
        cfg=cfg or config(env),
        cycle_id=CYCLE,
        decision=dec or decision(),
        agent=AGENT,
        cycle_status=status,
        duration_s=812.4,
        base_ref="origin/main",
        emit=env.emit,
        gh=gh or str(env.gh),
        retry=NO_BACKOFF,
        deadline=deadline,
    )


# --- check_permissions ---------------------------------------------------------------------------------


def test_default_permissions_allow_everything_but_github() -> None:
    perms = Permissions()
    files = ["src/a.py", "deep/ly/nested/f.txt", ".github/workflows/x.yml", "README.md", ".github/CODEOWNERS"]
    assert check_permissions(files, perms) == [".github/workflows/x.yml", ".github/CODEOWNERS"]


def test_write_list_limits_paths() -> None:
    perms = Permissions(write=["src/**", "tests/", "docs/*.md"], deny_write=["src/secrets/**"])
    files = ["src/a/b.py", "tests/unit/t.py", "docs/a.md", "docs/x/a.md", "setup.py", "src/secrets/k.txt"]
    assert check_permissions(files, perms) == ["docs/x/a.md", "setup.py", "src/secrets/k.txt"]


def test_empty_write_list_denies_all() -> None:
    assert check_permissions(["a.py"], Permissions(write=[], deny_write=[])) == ["a.py"]


# --- render_body ---------------------------------------------------------------------------------------


def test_body_carries_fields_and_marker() -> None:
    body = render_body(
        cycle_id=CYCLE,
        decision=decision(task=NASTY),
        agent=AGENT,
        cycle_status=Status.SUCCEEDED,
        duration_s=812.4,
        files=["src/x.py", "a`b.py"],
    )
    assert f"<!-- orchestrate:cycle={CYCLE} -->" in body
    assert NASTY in body
    for needle in (
        "Billing has no tests.",
        "claude-code",
        "13m 32s",
        "| Turns | 12 |",
        "$0.84",
        "1,200 in",
        "340 out",
        "5,000 cached",
        "`succeeded`",
    ):
        assert needle in body, needle
    # the file names, one a line, in one code block whose fence outlasts the backtick in a name
    assert "\n```\nsrc/x.py\na`b.py\n```\n" in body
    assert "```\nBilling has no tests.\n```" in body
    # the task's own ``` cannot close the block it sits in
    assert "````\n" + NASTY.strip() + "\n````" in body


def test_body_without_agent_and_unfinished() -> None:
    body = render_body(
        cycle_id=CYCLE, decision=decision(), agent=None, cycle_status=Status.TIMED_OUT, duration_s=5, files=[]
    )
    assert "not recorded" in body and "timed_out" in body and "_none_" in body


# --- publish -------------------------------------------------------------------------------------------


def test_creates_draft_pr_with_body_intact(env: Env) -> None:
    env.write("src/x.py")
    title = 'Fix "it" `now` $(rm -rf /) ✓'
    result = run(env, dec=decision(title=title, task=NASTY))

    assert result.status == "created", result
    assert result.url == "https://github.com/acme/api/pull/1" and result.number == 1 and result.draft is True
    [create] = env.calls("pr", "create")
    argv = create["argv"]
    # `--flag=value`: no value (a title, a branch) can be read as another flag.
    assert f"--title={title}" in argv and "--body-file=-" in argv
    assert "--base=main" in argv and f"--head={BRANCH}" in argv
    assert "--draft" in argv and "--repo" not in argv
    assert create["cwd"] == str(env.wt)
    assert create["env"] == {"GH_PROMPT_DISABLED": "1", "GH_NO_UPDATE_NOTIFIER": "1", "NO_COLOR": "1"}
    [stored] = read_state(env.state)["prs"]
    assert stored["body"] == create["stdin"]
    assert NASTY in stored["body"] and f"<!-- orchestrate:cycle={CYCLE} -->" in stored["body"]
    assert stored["title"] == title and stored["isDraft"] is True
    # gh call order, and only the create call gets stdin
    assert [c["argv"][:2] for c in read_calls(env.state)] == [
        ["auth", "status"],
        ["pr", "list"],
        ["pr", "create"],
        ["pr", "view"],
    ]
    assert all(c["stdin"] is None for c in read_calls(env.state) if c["argv"][:2] != ["pr", "create"])
    # the commit reached the bare remote, with the trailer
    head = sh("rev-parse", "HEAD", cwd=env.wt)
    assert env.remote_head() == head
    msg = sh("--git-dir", str(env.remote), "log", "-1", "--format=%B", BRANCH)
    assert msg.startswith(title + "\n\n") and f"Orchestrate-Cycle: {CYCLE}" in msg
    names = sh("--git-dir", str(env.remote), "log", "-1", "--name-only", "--format=", BRANCH).split()
    assert names == ["src/x.py"]
    assert env.events == [
        ("pr.opened", {"status": "created", "url": result.url, "number": 1, "draft": True, "branch": BRANCH})
    ]


def test_publish_twice_opens_one_pr(env: Env) -> None:
    env.write("src/x.py")
    first = run(env)
    second = run(env)
    assert first.status == "created"
    assert second.status == "exists" and second.url == first.url and second.number == first.number
    assert len(env.calls("pr", "create")) == 1
    assert len(read_state(env.state)["prs"]) == 1


def test_unauthenticated_skips_but_pushes(tmp_path: Path) -> None:
    env = make_env(tmp_path, "unauthenticated")
    env.write("src/x.py")
    result = run(env)
    assert result.status == "skipped" and result.reason == "gh_not_authenticated"
    assert env.remote_head() == sh("rev-parse", "HEAD", cwd=env.wt)
    assert [c["argv"][:2] for c in read_calls(env.state)] == [["auth", "status"]]
    assert env.events[-1] == (
        "pr.skipped",
        {"status": "skipped", "reason": "gh_not_authenticated", "branch": BRANCH, "pushed": True},
    )


def test_token_rejected_by_pr_list_is_not_authenticated(tmp_path: Path) -> None:
    env = make_env(tmp_path, "token_expired")
    env.write("src/x.py")
    result = run(env)
    assert result.status == "skipped" and result.reason == "gh_not_authenticated"
    assert env.remote_head() is not None and env.calls("pr", "create") == []


def test_gh_missing_skips_but_pushes(env: Env) -> None:
    env.write("src/x.py")
    result = run(env, gh=str(env.tmp / "nowhere" / "gh"))
    assert result.status == "skipped" and result.reason == "gh_not_found"
    assert env.remote_head() is not None


def test_existing_pr_is_reused(tmp_path: Path) -> None:
    env = make_env(tmp_path, "exists")
    env.write("src/x.py")
    result = run(env)
    assert result.status == "exists"
    assert result.url == "https://github.com/acme/api/pull/1" and result.number == 1 and result.draft is True
    assert env.calls("pr", "create") == []
    assert env.events[-1][0] == "pr.opened" and env.events[-1][1]["status"] == "exists"


def test_already_exists_on_create_is_looked_up(tmp_path: Path) -> None:
    env = make_env(tmp_path, "race")
    env.write("src/x.py")
    result = run(env)
    assert result.status == "exists" and result.number == 1
    assert [c["argv"][:2] for c in read_calls(env.state)] == [
        ["auth", "status"],
        ["pr", "list"],
        ["pr", "create"],
        ["pr", "list"],
    ]
    assert len(read_state(env.state)["prs"]) == 1


def test_unknown_label_retries_without_labels(env: Env) -> None:
    state = read_state(env.state)
    state["known_labels"] = ["bot"]
    (env.state / "state.json").write_text(json.dumps(state))
    env.write("src/x.py")
    result = run(env, config(env, pr={"labels": ["bot", "missing"]}))
    assert result.status == "created"
    first, second = env.calls("pr", "create")
    assert "--label=missing" in first["argv"] and not any(a.startswith("--label") for a in second["argv"])


def test_create_fails_once_then_created(tmp_path: Path) -> None:
    env = make_env(tmp_path, "create_fails_once")
    env.write("src/x.py")
    result = run(env)
    assert result.status == "created" and result.number == 1
    assert len(env.calls("pr", "create")) == 2
    assert len(read_state(env.state)["prs"]) == 1


def test_phantom_create_fails_with_reason(tmp_path: Path) -> None:
    env = make_env(tmp_path, "phantom")
    env.write("src/x.py")
    result = run(env)
    assert result.status == "failed"
    assert result.reason.startswith("pr_not_found_after_create") and "/pull/1" in result.reason
    assert result.url is None
    assert env.remote_head() is not None  # the work is still safe remotely
    assert env.events[-1][1]["status"] == "failed"


def test_bad_gh_output_fails_cleanly(tmp_path: Path) -> None:
    env = make_env(tmp_path, "bad_json")
    env.write("src/x.py")
    result = run(env)
    assert result.status == "failed" and result.reason == "gh_bad_output"


def test_denied_path_skips_without_pushing(env: Env) -> None:
    env.write("src/x.py")
    env.write(".github/workflows/ci.yml", "on: pull_request\n")
    result = run(env)
    assert result.status == "skipped"
    assert result.reason == "permission_denied: .github/workflows/ci.yml (deny_write)"
    assert env.remote_head() is None
    assert read_calls(env.state) == []
    # the work is kept locally, committed on the branch
    assert sh("status", "--porcelain", cwd=env.wt) == ""
    assert sh("rev-parse", "HEAD", cwd=env.wt) != sh("rev-parse", "origin/main", cwd=env.wt)


def test_rename_out_of_denied_path_is_denied(env: Env) -> None:
    sh("mv", ".github/workflows/ci.yml", "ci.yml", cwd=env.wt)
    result = run(env)
    assert result.status == "skipped" and result.reason is not None
    assert ".github/workflows/ci.yml" in result.reason
    assert env.remote_head() is None


def test_no_changes_skips(env: Env) -> None:
    result = run(env)
    assert result.status == "skipped" and result.reason == "no_changes"
    assert env.remote_head() is None and read_calls(env.state) == []
    assert env.events == [
        ("pr.skipped", {"status": "skipped", "reason": "no_changes", "branch": BRANCH, "pushed": False})
    ]


def test_push_disabled_keeps_branch_local(env: Env) -> None:
    env.write("src/x.py")
    result = run(env, config(env, permissions={"push": False}))
    assert result.status == "skipped" and result.reason == "push_disabled"
    assert env.remote_head() is None and read_calls(env.state) == []
    assert sh("log", "-1", "--format=%s", BRANCH, cwd=env.clone) == "Raise coverage of billing"


@pytest.mark.parametrize("sections", [{"permissions": {"open_pr": False}}, {"pr": {"enabled": False}}])
def test_pr_disabled_pushes_then_skips(env: Env, sections: dict[str, Any]) -> None:
    env.write("src/x.py")
    result = run(env, config(env, **sections))
    assert result.status == "skipped" and result.reason == "pr_disabled"
    assert env.remote_head() == sh("rev-parse", "HEAD", cwd=env.wt)
    assert read_calls(env.state) == []


def test_failed_cycle_pushes_and_skips(env: Env) -> None:
    env.write("src/x.py")
    result = run(env, status=Status.FAILED)
    assert result.status == "skipped" and result.reason == "cycle_failed"
    assert env.remote_head() == sh("rev-parse", "HEAD", cwd=env.wt)
    assert read_calls(env.state) == []


def test_failed_cycle_with_open_on_failure_is_unfinished(env: Env) -> None:
    env.write("src/x.py")
    result = run(env, config(env, pr={"open_on_failure": True}), status=Status.TIMED_OUT)
    assert result.status == "created"
    [stored] = read_state(env.state)["prs"]
    assert stored["title"] == "[unfinished] Raise coverage of billing"
    assert "timed_out" in stored["body"]


def test_repo_labels_base_and_not_draft(env: Env) -> None:
    env.write("src/x.py")
    cfg = config(
        env, pr={"repo": "ghe.example.com/acme/api", "labels": ["bot", "nightly"], "draft": False, "base": "main"}
    )
    result = run(env, cfg)
    assert result.status == "created" and result.draft is False
    assert result.url == "https://ghe.example.com/acme/api/pull/1"
    for call in read_calls(env.state):
        argv = call["argv"]
        if argv[0] == "pr":
            assert argv[argv.index("--repo") + 1] == "ghe.example.com/acme/api"
        else:
            assert argv == ["auth", "status", "--hostname", "ghe.example.com"]
    [create] = env.calls("pr", "create")
    assert "--draft" not in create["argv"]
    labels = [a.removeprefix("--label=") for a in create["argv"] if a.startswith("--label=")]
    assert labels == ["bot", "nightly"]


def test_diverged_remote_branch_is_rejected_not_forced(env: Env) -> None:
    # someone else pushed to the branch name first
    other = env.tmp / "other"
    sh("clone", "-q", str(env.remote), str(other))
    sh("checkout", "-q", "-b", BRANCH, cwd=other)
    (other / "theirs.txt").write_text("theirs\n")
    sh("add", "-A", cwd=other)
    sh("-c", "user.name=O", "-c", "user.email=o@x", "commit", "-q", "-m", "theirs", cwd=other)
    sh("push", "-q", "origin", BRANCH, cwd=other)
    theirs = env.remote_head()

    env.write("src/x.py")
    result = run(env)
    assert result.status == "failed" and result.reason is not None
    assert result.reason.startswith("push_rejected")
    assert env.remote_head() == theirs
    assert read_calls(env.state) == []


def test_transient_push_failure_is_retried(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    real_git = git
    pushes: list[list[str]] = []

    def flaky(args: list[str], cwd: Any, **kw: Any) -> Any:
        if args[0] == "push":
            pushes.append(list(args))
            if len(pushes) < 3:
                raise GitError(
                    args,
                    128,
                    "fatal: unable to access 'https://x:secret@github.com/a/b/': Could not resolve host: github.com",
                )
        return real_git(args, cwd, **kw)

    monkeypatch.setattr(pr_mod, "git", flaky)
    env.write("src/x.py")
    assert run(env).status == "created"
    assert len(pushes) == 3 and pushes[0][-2:] == ["origin", f"refs/heads/{BRANCH}:refs/heads/{BRANCH}"]
    assert env.remote_head() is not None


def test_push_failure_reason_hides_credentials(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(args: list[str], cwd: Any, **kw: Any) -> Any:
        raise GitError(args, 128, "fatal: unable to access 'https://x:secret@github.com/a/b/': timed out")

    monkeypatch.setattr(pr_mod, "git", lambda a, c, **kw: down(a, c) if a[0] == "push" else git(a, c, **kw))
    env.write("src/x.py")
    result = run(env)
    assert result.status == "failed" and result.reason is not None
    assert result.reason.startswith("push_failed") and "secret" not in result.reason


def test_emit_failure_does_not_break_publish(env: Env) -> None:
    def broken(kind: str, data: dict[str, Any]) -> None:
        raise ConnectionError("redis down")

    env.write("src/x.py")
    result = publish(
        tree=Tree.discover(env.wt),
        branch=BRANCH,
        cfg=config(env),
        cycle_id=CYCLE,
        decision=decision(),
        agent=None,
        cycle_status=Status.SUCCEEDED,
        duration_s=1.0,
        base_ref="origin/main",
        emit=broken,
        gh=str(env.gh),
        retry=NO_BACKOFF,
    )
    assert result.status == "created"


def test_not_a_repository_is_a_failed_result(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    result = publish(
        tree=Tree(work_tree=tmp_path / "missing", git_dir=tmp_path / "missing" / ".git"),
        branch=BRANCH,
        cfg=config(env),
        cycle_id=CYCLE,
        decision=decision(),
        agent=None,
        cycle_status=Status.SUCCEEDED,
        duration_s=1.0,
        base_ref="origin/main",
        emit=env.emit,
        gh=str(env.gh),
        retry=NO_BACKOFF,
    )
    assert result.status == "failed" and result.reason


def test_fake_gh_on_path(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{env.gh.parent}:{__import__('os').environ['PATH']}")
    env.write("src/x.py")
    result = publish(
        tree=Tree.discover(env.wt),
        branch=BRANCH,
        cfg=config(env),
        cycle_id=CYCLE,
        decision=decision(),
        agent=AGENT,
        cycle_status=Status.SUCCEEDED,
        duration_s=3.0,
        base_ref="origin/main",
        emit=env.emit,
        retry=NO_BACKOFF,
    )
    assert result.status == "created"


def test_an_unexpected_error_after_the_push_still_reports_the_push(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.write("src/x.py")

    def broken(*_: Any, **__: Any) -> Any:
        raise ValueError("a bug after the push")

    monkeypatch.setattr(pr_mod, "_find_pr", broken)
    result = run(env)
    assert result.status == "failed" and result.reason == "publish_error: ValueError: a bug after the push"
    assert result.pushed is True and env.remote_head() == sh("rev-parse", "HEAD", cwd=env.wt)


def test_each_gh_call_and_push_is_bounded_by_the_publish_deadline(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    timeouts: list[tuple[str, float | None]] = []
    from orchestration import gh as gh_mod

    real_run_in_group, real_git = gh_mod.run_in_group, pr_mod.git

    def recording_gh(argv: list[str], **kw: Any) -> Any:
        timeouts.append((argv[1], kw.get("timeout")))
        return real_run_in_group(argv, **kw)

    def recording_git(args: list[str], *a: Any, **kw: Any) -> Any:
        if args[0] == "push":
            timeouts.append(("push", kw.get("timeout")))
        return real_git(args, *a, **kw)

    monkeypatch.setattr(gh_mod, "run_in_group", recording_gh)
    monkeypatch.setattr(pr_mod, "git", recording_git)
    env.write("src/x.py")
    result = run(env, deadline=time.time() + 20)
    assert result.status == "created"
    assert {name for name, _ in timeouts} >= {"push", "auth", "pr"}
    assert all(t is not None and 0 < t <= 20 for _, t in timeouts), timeouts


# --- a PR that resolves a tracker issue -----------------------------------------------------------------


def test_a_pr_for_an_issue_says_fixes_and_comments_once(env: Env) -> None:
    from orchestration.issues import ISSUE_MARKER
    from tests.fixtures.fake_gh import add_issue

    number = add_issue(env.state, "Fix the dates parser", "It returns None.", "octocat")
    dec = decision("#1: Fix the dates parser").model_copy(update={"issue": number})
    env.write("src/x.py")
    first = run(env, dec=dec)
    assert first.status == "created" and first.comment == "posted"
    [create] = env.calls("pr", "create")
    body = create["stdin"]
    assert f"\nFixes #{number}\n" in body
    m = ISSUE_MARKER.search(body)
    assert m is not None and m.group(1) == str(number)  # the issue source finds the PR by this line
    [comment] = env.calls("issue", "comment")
    assert comment["argv"] == ["issue", "comment", str(number), "--body-file=-"]
    assert f"{first.url}" in comment["stdin"] and f"<!-- orchestrate:pr={first.number} -->" in comment["stdin"]
    # A second publish on the same branch (a later cycle on the same PR) finds the PR and its comment.
    again = run(env, dec=dec)
    assert again.status == "exists" and again.comment == "exists"
    assert len(env.calls("issue", "comment")) == 1
    issue = next(i for i in read_state(env.state)["issues"] if i["number"] == number)
    assert len(issue["comments"]) == 1
    # Without `issues.comment`, no comment is looked for or written; no issue, no comment either.
    assert run(env, config(env, issues={"comment": False}), dec=dec).comment is None
    assert run(env).comment is None
    assert len(env.calls("issue", "view")) == 2  # one per publish that had a comment to look for


def test_a_failed_cycle_leaves_no_comment_unless_open_on_failure(env: Env) -> None:
    from tests.fixtures.fake_gh import add_issue

    number = add_issue(env.state, "Fix it", "body", "octocat")
    dec = decision("#1: Fix it").model_copy(update={"issue": number})
    env.write("src/x.py")
    failed = run(env, dec=dec, status=Status.FAILED)
    assert failed.status == "skipped" and failed.comment is None and env.calls("issue") == []
    opened = run(env, config(env, pr={"open_on_failure": True}), dec=dec, status=Status.FAILED)
    assert opened.status == "created" and opened.comment == "posted"


def test_a_comment_that_fails_leaves_the_pr_open(env: Env) -> None:
    dec = decision("#99: Gone").model_copy(update={"issue": 99})  # no such issue
    env.write("src/x.py")
    result = run(env, dec=dec)
    assert result.status == "created" and (result.comment or "").startswith("failed: GraphQL: Could not resolve")
