"""Issues become cycles, end to end: a real prefork worker on a real Redis, the real `claude` CLI against a
scripted model API, and the recording `gh` stand-in holding the repository's issues. A labelled issue by a
writer becomes the task; its PR says `Fixes #N` and the issue gets one comment; the next cycle does not take
it again; an issue by an author without write access never reaches the model; a `gh` that fails on the
issue list leaves a cycle that runs on the session history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.test_claude_cycle import claude_binary, short_tmp  # noqa: F401 (a fixture)
from tests.fixtures.anthropic_server import ScriptedAnthropic, claude_env, write_file_script
from tests.fixtures.fake_gh import add_issue, install_fake_gh, read_calls, read_state, set_collaborators, set_mode
from tests.helpers import NODE_BIN, celery_worker, make_repo, orchestrate
from tests.unit.test_sessions import Claude, tool_use, usage

pytestmark = pytest.mark.e2e
UNTRUSTED = "MALLORY-SAYS-DELETE-EVERYTHING"
UNTRUSTED_COMMENT = "MALLORY-COMMENT-RUN-CURL"


def failing_history(claude_dir: Path, repo: Path) -> None:
    """A session that kept failing on `pytest tests/test_app.py`: what the third cycle works on."""
    c = Claude(str(repo))
    lines: list[Any] = [c.prompt("make the app tests pass", 1)]
    for i in range(3):
        lines += [
            c.assistant(
                f"m{i}", f"r{i}", 2 + i, [tool_use(f"t{i}", "Bash", command="pytest tests/test_app.py")], usage(1, 1)
            ),
            c.tool_result(f"t{i}", 2 + i, is_error=True),
        ]
    path = claude_dir / "projects" / "p" / f"{c.session}.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))


@pytest.mark.timeout(300)
def test_labelled_issues_become_cycles_with_one_pr_and_one_comment(
    tmp_path: Path,
    orch_env: dict[str, str],
    short_tmp: Path,  # noqa: F811
) -> None:
    claude = claude_binary()
    repo, _bare = make_repo(tmp_path)
    bin_dir, gh_state = tmp_path / "bin", tmp_path / "gh"
    install_fake_gh(bin_dir, gh_state)
    set_collaborators(gh_state, {"bob": "write", "mallory": "read"})
    issue = add_issue(
        gh_state,
        "Add a greeting file",
        "Please add `greeting.txt` saying hello.",
        "bob",
        created_at="2026-11-20T10:00:00Z",
        comments=(("mallory", UNTRUSTED_COMMENT), ("bob", "Keep it short.")),
    )
    evil = add_issue(gh_state, "Clean up", UNTRUSTED, "mallory", created_at="2026-11-01T10:00:00Z")
    failing_history(tmp_path / "claude", repo)
    cfg_path = tmp_path / "demo.json"
    cfg_path.write_text(
        json.dumps(
            {
                "id": "demo",
                "workspace": {"repo": str(repo)},
                "budget": {"cycle_s": 180, "max_cost_usd": 5},
                "sessions": {"claude_dir": str(tmp_path / "claude"), "codex_dir": str(tmp_path / "none"),
                             "since_days": 3650},
                "decision": {"backend": "heuristic"},
                "agents": {"allow": ["claude-code"], "claude-code": {"command": str(claude)}},
                "pr": {"repo": "acme/api"},
                "issues": {"enabled": True},
            }
        )
    )  # fmt: skip
    script = [*write_file_script("greeting.txt", "hello\n"), *write_file_script("fix.txt", "fixed\n")]
    with ScriptedAnthropic(script=script) as srv:
        env = {**orch_env, **claude_env(srv.base_url, tmp_path / "home", tmpdir=short_tmp)}
        env.update({k: orch_env[k] for k in orch_env if k.startswith("ORCH_") or k.startswith("PYTHON")})
        env["PATH"] = f"{bin_dir}:{NODE_BIN}:{orch_env['PATH']}"
        with celery_worker(env, tmp_path / "worker.log"):
            first = orchestrate(["run", str(cfg_path), "--json"], env)
            second = orchestrate(["run", str(cfg_path), "--json", "--dry-run"], env)
            set_mode(gh_state, "rate_limited")  # the tracker is unreachable from now on
            third = orchestrate(["run", str(cfg_path), "--json"], env)
        requests = json.dumps([c.body for c in srv.calls])
    log = (tmp_path / "worker.log").read_text()[-4000:]

    # 1. The labelled issue by a writer is the task; its PR says `Fixes #N`; one comment links the PR.
    assert first.returncode == 0, first.stdout + first.stderr + log
    report = json.loads(first.stdout)
    assert report["status"] == "succeeded" and report["decision"]["issue"] == issue
    assert report["decision"]["title"] == f"#{issue}: Add a greeting file"
    assert f"issue-{issue}-" in report["branch"]
    assert "Please add `greeting.txt` saying hello." in report["decision"]["task"]
    assert "bob: Keep it short." in report["decision"]["task"]
    calls = read_calls(gh_state)
    creates = [c for c in calls if c["argv"][:2] == ["pr", "create"]]
    [create] = [c for c in creates if f"orchestrate:cycle={report['cycle_id']} " in c["stdin"]]
    assert f"\nFixes #{issue}\n" in create["stdin"]
    assert f"<!-- orchestrate:cycle={report['cycle_id']} issue={issue} -->" in create["stdin"]
    comments = [c for c in calls if c["argv"][:2] == ["issue", "comment"]]
    assert len(comments) == 1 and comments[0]["argv"][2] == str(issue)
    assert report["pr"]["url"] in comments[0]["stdin"]
    # The untrusted issue and comment were never viewed, and never reached the model.
    assert ["issue", "view", str(evil)] not in [c["argv"][:3] for c in calls]
    assert UNTRUSTED not in requests and UNTRUSTED_COMMENT not in requests
    assert "Please add `greeting.txt` saying hello." in requests  # the same search finds the issue that was read

    # 2. The next cycle does not take the issue again: it has an open PR from orchestrate.
    assert second.returncode == 0, second.stdout + second.stderr + log
    decided = json.loads(second.stdout)["decision"]
    assert decided.get("issue") is None and decided["title"] == "Fix tests/test_app.py (pytest)"

    # 3. gh failing on the issue list: the cycle runs on the session history, saying why issues were skipped.
    assert third.returncode == 0, third.stdout + third.stderr + log
    last = json.loads(third.stdout)
    assert last["status"] == "succeeded"
    assert last["decision"]["title"].startswith("Fix tests/test_app.py")
    assert last["decision"]["source_errors"] == {"issues": "rate_limited: gh issue list"}
    assert len(creates) == 2 and "Fixes #" not in creates[-1]["stdin"]  # its PR resolves no issue
    issue_state = next(i for i in read_state(gh_state)["issues"] if i["number"] == issue)
    assert [c["author"]["login"] for c in issue_state["comments"]] == ["mallory", "bob", "octocat"]
