"""`git.commit` and the push at the end, through `orchestrate run --local` on a real repository with a bare
remote: commits in steps, their outputs read by later steps, and the work on the remote branch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import make_repo, orchestrate, sh

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

DEAD_REDIS = "redis://127.0.0.1:1/0"


def run_local(
    tmp: Path, env: dict[str, str], steps: list[dict[str, Any]], *flags: str, **extra: Any
) -> tuple[dict[str, Any], Path]:
    """Runs the steps with `run --local --json`; the report, and the bare remote (events go to stderr)."""
    repo, bare = make_repo(tmp)
    cfg = {
        "id": "steps",
        "workspace": {"repo": str(repo)},
        "sessions": {"claude_dir": str(tmp / "none"), "codex_dir": str(tmp / "none")},
        "permissions": {"shell": ["python3"]},
        "pipeline": steps,
        **extra,
    }
    path = tmp / "c.json"
    path.write_text(json.dumps(cfg))
    proc = orchestrate(
        ["run", "--local", "--json", *flags, str(path)], dict(env, ORCH_REDIS_URL=DEAD_REDIS, ORCH_ALLOW="shell")
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    report["events_text"] = proc.stderr
    return report, bare


def git_log(bare: Path, branch: str) -> list[str]:
    return sh(["git", "--git-dir", str(bare), "log", "--format=%s", f"main..{branch}"], bare).splitlines()


def write(name: str, text: str = "x") -> dict[str, Any]:
    code = f"open({name!r}, 'w').write({text!r})"
    return {"op": "shell.run", "with": {"command": ["python3", "-c", code]}}


def test_commits_in_steps_feed_later_steps_and_reach_the_remote(tmp_path: Path, orch_env: dict[str, str]) -> None:
    steps = [
        write("a.txt"),
        write("b.txt"),
        {"op": "git.commit", "as": "first", "with": {"message": "add a on ${date}", "paths": ["a.txt"]}},
        {"op": "git.commit", "as": "rest", "with": {"message": "the rest"}},
        {"op": "git.commit", "as": "nothing"},  # nothing left to commit: sha null
        {
            "op": "shell.run",
            "as": "echo",
            "with": {
                "command": [
                    "python3",
                    "-c",
                    "import sys; print(sys.argv[1:])",
                    "${first.files.0}",
                    "rest=${rest.files}",
                ],
                "env": {"NONE": "sha=${nothing.sha}"},  # null inside text: empty
            },
        },
    ]
    report, bare = run_local(tmp_path, orch_env, steps)
    assert report["status"] == "succeeded", report["steps"]
    assert [s["status"] for s in report["steps"]] == ["succeeded"] * 6
    log = git_log(bare, report["branch"])
    assert len(log) == 2 and log[1].startswith("add a on 20") and log[0] == "the rest"
    files = sh(["git", "--git-dir", str(bare), "show", "--name-only", "--format=", f"{report['branch']}~1"], bare)
    assert files.split() == ["a.txt"]
    assert report["pr"] == {"status": "skipped", "url": None, "number": None, "draft": None, "reason": "no_pr_step"}
    # The later step read the commits' outputs: a file name, and a list rendered into text as JSON.
    assert """print(sys.argv[1:]) a.txt rest=["b.txt"]""" in report["events_text"]


def test_a_failed_checked_step_keeps_earlier_commits_and_the_rest_is_pushed(
    tmp_path: Path, orch_env: dict[str, str]
) -> None:
    steps = [
        write("a.txt"),
        {"op": "git.commit", "with": {"message": "a"}},
        write("b.txt"),
        {"op": "shell.run", "as": "tests", "with": {"command": ["python3", "-c", "raise SystemExit(4)"]}},
        {"op": "git.commit", "with": {"message": "never"}},
    ]
    report, bare = run_local(tmp_path, orch_env, steps)
    assert (report["status"], report["reason"]) == ("failed", "step_failed")
    assert [s["status"] for s in report["steps"]] == ["succeeded", "succeeded", "succeeded", "failed", "skipped"]
    log = git_log(bare, report["branch"])
    # The uncommitted b.txt was saved as a WIP commit at the end and pushed with the rest.
    assert len(log) == 2 and log[1] == "a" and log[0].startswith("WIP: ")
    shown = sh(["git", "--git-dir", str(bare), "show", "--name-only", "--format=", report["branch"]], bare)
    assert shown.split() == ["b.txt"]


def test_commit_paths_must_stay_inside_the_worktree(tmp_path: Path, orch_env: dict[str, str]) -> None:
    repo, _bare = make_repo(tmp_path)
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(
            {
                "workspace": {"repo": str(repo)},
                "pipeline": [{"op": "git.commit", "with": {"paths": ["../outside", ":(top)x", "-x", "ok/fine.txt"]}}],
            }
        )
    )
    proc = orchestrate(["validate", str(cfg)], orch_env)
    assert proc.returncode == 2
    for i in (0, 1, 2):
        assert f"pipeline[0].with.paths[{i}] (git.commit): expected a relative path inside the worktree" in proc.stdout
    assert "paths[3]" not in proc.stdout


def test_a_dry_run_only_analyzes_and_decides(tmp_path: Path, orch_env: dict[str, str]) -> None:
    steps = [
        {"op": "session.analyze", "as": "insights"},
        write("ran.txt"),  # no decide step: a dry run must still not run anything
        {"op": "git.commit"},
    ]
    report, bare = run_local(tmp_path, orch_env, steps, "--dry-run")
    assert report["status"] == "succeeded"
    assert [s["status"] for s in report["steps"]] == ["succeeded", "skipped", "skipped"]
    assert report["branch"] is None and "agent/" not in sh(["git", "--git-dir", str(bare), "branch"], bare)
