"""The `orchestrate` command as a user runs it: a subprocess, stdin closed, exit codes and output.

Every call asserts that no Python traceback reaches the user. `run --local` runs with ORCH_REDIS_URL pointing
at a closed port, which proves it does not need Redis; the other commands use the session's redis-server.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.fake_gh import install_fake_gh, read_calls
from tests.helpers import ROOT, make_repo, orchestrate, sh

FAKE_CLAUDE = ROOT / "tests" / "fixtures" / "fake_claude.py"
DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: any use of Redis fails at once

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def show(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def workspace_config(tmp: Path, repo: Path, **extra: Any) -> dict[str, Any]:
    """A config that runs the stand-in agent and reads no real session history."""
    return {
        "id": "demo",
        "workspace": {"repo": str(repo)},
        "budget": {"cycle_s": 120, "idle_timeout_s": 60},
        "sessions": {"claude_dir": str(tmp / "no-claude"), "codex_dir": str(tmp / "no-codex")},
        "goals": ["Write orchestrated.txt"],
        "agents": {"allow": ["claude-code"], "claude-code": {"command": str(FAKE_CLAUDE)}},
        **extra,
    }


@pytest.fixture
def local(tmp_path: Path, orch_env: dict[str, str]) -> dict[str, Any]:
    """A repository with its bare remote, a fake gh on PATH, a config, and an env whose Redis is dead."""
    repo, bare = make_repo(tmp_path)
    bin_dir = tmp_path / "bin"
    install_fake_gh(bin_dir, tmp_path / "gh")
    env = dict(orch_env, ORCH_REDIS_URL=DEAD_REDIS, PATH=f"{bin_dir}:{orch_env['PATH']}")
    cfg = write_json(tmp_path / "demo.json", workspace_config(tmp_path, repo))
    return {"tmp": tmp_path, "repo": repo, "bare": bare, "env": env, "cfg": cfg, "state": Path(env["ORCH_STATE_DIR"])}


def remote_branches(bare: Path) -> list[str]:
    return sh(["git", "--git-dir", str(bare), "for-each-ref", "--format=%(refname:short)", "refs/heads"], bare).split()


# -- validate ----------------------------------------------------------------------------------------


def test_validate_valid_file_exits_0_and_says_ok(tmp_path: Path, orch_env: dict[str, str]) -> None:
    good = write_json(tmp_path / "good.json", {"workspace": {"repo": str(tmp_path / "repo")}})
    proc = orchestrate(["validate", str(good)], orch_env)
    assert proc.returncode == 0, show(proc)
    assert "ok" in proc.stdout and str(good) in proc.stdout


def test_validate_names_file_and_json_path_of_every_error(tmp_path: Path, orch_env: dict[str, str]) -> None:
    good = write_json(tmp_path / "good.json", {"workspace": {"repo": str(tmp_path / "repo")}})
    bad = write_json(
        tmp_path / "bad.json",
        {
            "workspace": {"repo": str(tmp_path / "repo")},
            "bogus_field": 1,
            "agents": {"prefer": "gpt-9"},
            "schedule": {"cron": "61 * * * *"},
        },
    )
    proc = orchestrate(["validate", str(good), str(bad)], orch_env)
    assert proc.returncode == 2, show(proc)
    text = proc.stdout + proc.stderr
    error_lines = [line for line in text.splitlines() if "bad.json" in line]
    for path, value in (("bogus_field", None), ("agents.prefer", "gpt-9"), ("schedule.cron", "61")):
        hits = [line for line in error_lines if path in line]
        assert hits, f"no error line names {path}:\n{show(proc)}"
        assert all(str(bad) in line for line in hits), hits
        if value:
            assert any(value in line for line in hits), f"{path}: bad value {value!r} not shown: {hits}"
    # The valid file is still reported valid, and never blamed.
    assert not any("good.json" in line and "invalid" in line for line in text.splitlines()), show(proc)


def test_validate_missing_file_exits_2(tmp_path: Path, orch_env: dict[str, str]) -> None:
    missing = tmp_path / "nope.json"
    proc = orchestrate(["validate", str(missing)], orch_env)
    assert proc.returncode == 2, show(proc)
    assert str(missing) in proc.stdout + proc.stderr


def test_validate_invalid_json_exits_2(tmp_path: Path, orch_env: dict[str, str]) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"workspace": {"repo": ')
    proc = orchestrate(["validate", str(broken)], orch_env)
    assert proc.returncode == 2, show(proc)
    assert str(broken) in proc.stdout + proc.stderr and "JSON" in proc.stdout + proc.stderr


def test_validate_cycle_budget_must_fit_visibility_timeout(tmp_path: Path, orch_env: dict[str, str]) -> None:
    cfg = write_json(
        tmp_path / "long.json", {"workspace": {"repo": str(tmp_path / "repo")}, "budget": {"cycle_s": 1800}}
    )
    proc = orchestrate(["validate", str(cfg)], dict(orch_env, ORCH_VISIBILITY_TIMEOUT_S="100"))
    assert proc.returncode == 2, show(proc)
    text = proc.stdout + proc.stderr
    assert "budget.cycle_s" in text and "ORCH_VISIBILITY_TIMEOUT_S" in text, show(proc)
    # The same file is fine with the default (12 h) visibility timeout.
    assert orchestrate(["validate", str(cfg)], orch_env).returncode == 0


def test_validate_shows_bad_values_with_brackets_verbatim(tmp_path: Path, orch_env: dict[str, str]) -> None:
    """Values from the file are data, not console markup: `[/x]` must neither crash nor vanish."""
    closing = write_json(tmp_path / "closing.json", {"workspace": {"repo": "r"}, "agents": {"prefer": "[/x]"}})
    proc = orchestrate(["validate", str(closing)], orch_env)
    assert proc.returncode == 2, show(proc)
    assert "agents.prefer" in proc.stdout + proc.stderr and "[/x]" in proc.stdout + proc.stderr, show(proc)
    styled = write_json(
        tmp_path / "styled.json", {"workspace": {"repo": "r"}, "agents": {"prefer": "[bold]gpt[/bold]"}}
    )
    proc = orchestrate(["validate", str(styled)], orch_env)
    assert proc.returncode == 2, show(proc)
    assert "[bold]gpt[/bold]" in proc.stdout + proc.stderr, show(proc)


def test_validate_prints_paths_with_brackets_verbatim(tmp_path: Path, orch_env: dict[str, str]) -> None:
    folder = tmp_path / "[staging]"
    folder.mkdir()
    good = write_json(folder / "good.json", {"workspace": {"repo": "r"}})
    proc = orchestrate(["validate", str(good)], orch_env)
    assert proc.returncode == 0, show(proc)
    assert str(good) in proc.stdout, show(proc)


def test_bad_setting_in_environment_is_a_clear_error(tmp_path: Path, orch_env: dict[str, str]) -> None:
    good = write_json(tmp_path / "good.json", {"workspace": {"repo": "r"}})
    proc = orchestrate(["validate", str(good)], dict(orch_env, ORCH_VISIBILITY_TIMEOUT_S="twelve hours"))
    assert proc.returncode == 2, show(proc)
    assert "visibility_timeout_s" in (proc.stdout + proc.stderr).lower(), show(proc)


# -- run --local (no Redis) --------------------------------------------------------------------------


def test_run_local_without_redis_pushes_branch_and_opens_pr(local: dict[str, Any]) -> None:
    proc = orchestrate(["run", str(local["cfg"]), "--local", "--json"], local["env"], timeout=60)
    assert proc.returncode == 0, show(proc)
    report = json.loads(proc.stdout)  # stdout holds the report alone; events go to stderr
    assert report["status"] == "succeeded" and report["reason"] is None, report
    assert report["workspace"] == "demo"
    assert report["decision"]["title"] == "Write orchestrated.txt"
    assert report["agent"]["status"] == "succeeded"
    assert report["agent"]["files_changed"] == ["orchestrated.txt"]
    branch = report["branch"]
    assert branch and branch.startswith("agent/orchestration/")
    assert branch in remote_branches(local["bare"])
    shown = sh(["git", "--git-dir", str(local["bare"]), "show", f"{branch}:orchestrated.txt"], local["tmp"])
    assert "written by the fake agent" in shown
    assert report["pr"]["status"] == "created" and report["pr"]["url"], report["pr"]
    creates = [c for c in read_calls(local["tmp"] / "gh") if c["argv"][:2] == ["pr", "create"]]
    assert len(creates) == 1 and "--draft" in creates[0]["argv"]
    assert "cycle.finished" in proc.stderr
    # The user's checkout is untouched; local state lives under ORCH_STATE_DIR.
    assert sh(["git", "status", "--porcelain"], local["repo"]) == ""
    assert local["state"].is_dir()


def test_run_local_human_output_shows_events_and_report(local: dict[str, Any]) -> None:
    proc = orchestrate(["run", str(local["cfg"]), "--local"], local["env"], timeout=60)
    assert proc.returncode == 0, show(proc)
    out = proc.stdout
    for kind in ("cycle.queued", "stage.started", "decision.made", "agent.tool_call", "pr.opened", "cycle.finished"):
        assert kind in out, f"event {kind} not shown:\n{show(proc)}"
    assert out.index("cycle.queued") < out.index("decision.made") < out.index("cycle.finished")
    table = out[out.rindex("cycle.finished") :].splitlines()[1:]
    rows = {line.split(maxsplit=1)[0]: line for line in table if line.strip()}
    for key in ("cycle", "workspace", "status", "task", "agent", "branch", "pr"):
        assert key in rows, f"report row {key!r} missing:\n{show(proc)}"
    assert "succeeded" in rows["status"]
    assert "Write orchestrated.txt" in rows["task"]
    assert "agent/orchestration/" in rows["branch"]
    assert "https://github.com/" in rows["pr"]


def test_run_local_dry_run_decides_and_stops(local: dict[str, Any]) -> None:
    proc = orchestrate(["run", str(local["cfg"]), "--local", "--dry-run", "--json"], local["env"], timeout=60)
    assert proc.returncode == 0, show(proc)
    report = json.loads(proc.stdout)
    assert report["status"] == "succeeded", report
    assert report["decision"]["title"] == "Write orchestrated.txt"
    assert report["decision"]["agent"] == "claude-code"
    assert report["branch"] is None and report["agent"] is None and report["pr"] is None, report
    worktrees = local["state"] / "worktrees"
    assert not worktrees.exists() or not any(worktrees.iterdir()), list(worktrees.iterdir())
    assert remote_branches(local["bare"]) == ["main"]
    assert read_calls(local["tmp"] / "gh") == []
    assert sh(["git", "branch", "--format=%(refname:short)"], local["repo"]).split() == ["main"]


def test_run_local_failed_agent_exits_1(local: dict[str, Any]) -> None:
    claude = {"command": str(FAKE_CLAUDE), "env": {"FAKE_CLAUDE_MODE": "error_result"}}
    cfg = workspace_config(local["tmp"], local["repo"], agents={"allow": ["claude-code"], "claude-code": claude})
    path = write_json(local["tmp"] / "failing.json", cfg)
    proc = orchestrate(["run", str(path), "--local", "--json"], local["env"], timeout=60)
    assert proc.returncode == 1, show(proc)
    report = json.loads(proc.stdout)
    assert report["status"] == "failed" and report["reason"] == "agent_failed", report


def test_run_local_human_report_with_brackets_in_task_title(local: dict[str, Any]) -> None:
    """A task title is data: `[/api]` in it must not crash the report of a cycle that succeeded."""
    cfg = write_json(
        local["tmp"] / "brackets.json",
        workspace_config(local["tmp"], local["repo"], goals=["Fix routing of [/api] prefixes"]),
    )
    proc = orchestrate(["run", str(cfg), "--local"], local["env"], timeout=60)
    assert proc.returncode == 0, show(proc)
    assert "Fix routing of [/api] prefixes" in proc.stdout, show(proc)


# -- run: bad input, unreachable Redis ----------------------------------------------------------------


@pytest.mark.parametrize("mode", [[], ["--local"]], ids=["celery", "local"])
def test_run_missing_config_exits_2(tmp_path: Path, orch_env: dict[str, str], mode: list[str]) -> None:
    proc = orchestrate(["run", str(tmp_path / "nope.json"), *mode], orch_env)
    assert proc.returncode == 2, show(proc)
    assert "nope.json" in proc.stderr


@pytest.mark.parametrize("mode", [[], ["--local"]], ids=["celery", "local"])
def test_run_invalid_config_exits_2(tmp_path: Path, orch_env: dict[str, str], mode: list[str]) -> None:
    cfg = write_json(tmp_path / "bad.json", {"workspace": {"repo": "r"}, "agents": {"prefer": "gpt-9"}})
    proc = orchestrate(["run", str(cfg), *mode], orch_env)
    assert proc.returncode == 2, show(proc)
    assert "agents.prefer" in proc.stderr, show(proc)


def test_run_unknown_flag_exits_2(tmp_path: Path, orch_env: dict[str, str]) -> None:
    cfg = write_json(tmp_path / "good.json", {"workspace": {"repo": "r"}})
    proc = orchestrate(["run", str(cfg), "--bogus"], orch_env)
    assert proc.returncode == 2, show(proc)
    assert "--bogus" in proc.stderr


def test_run_without_reachable_redis_exits_1_with_one_line(tmp_path: Path, orch_env: dict[str, str]) -> None:
    cfg = write_json(tmp_path / "good.json", {"workspace": {"repo": "r"}})
    proc = orchestrate(["run", str(cfg)], dict(orch_env, ORCH_REDIS_URL=DEAD_REDIS))
    assert proc.returncode == 1, show(proc)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, show(proc)
    assert "Redis" in lines[0] and "127.0.0.1:1" in lines[0], lines
    assert proc.stdout == ""


# -- status / cancel / watch ----------------------------------------------------------------------------


def test_status_with_no_cycles(orch_env: dict[str, str]) -> None:
    proc = orchestrate(["status"], orch_env)
    assert proc.returncode == 0, show(proc)
    proc = orchestrate(["status", "--json"], orch_env)
    assert proc.returncode == 0, show(proc)
    assert json.loads(proc.stdout) == []


def test_status_watch_refreshes_until_ctrl_c_and_workers_says_when_none_live(orch_env: dict[str, str]) -> None:
    import signal
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestration.cli", "status", "--watch", "--every", "0.3"],
        env=orch_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "recent cycles (0)" in stdout, stdout + stderr
    assert "Traceback" not in stderr
    none = orchestrate(["workers"], orch_env)
    assert none.returncode == 0 and "no live workers" in none.stdout, show(none)


@pytest.mark.parametrize("command", ["status", "cancel", "watch"])
def test_unknown_cycle_exits_1_with_clear_message(orch_env: dict[str, str], command: str) -> None:
    proc = orchestrate([command, "20990101-000000-deadbeef"], orch_env, timeout=20)
    assert proc.returncode == 1, show(proc)
    assert "no cycle" in proc.stderr and "20990101-000000-deadbeef" in proc.stderr, show(proc)


# -- enqueue / decide / analyze / schedule / worker ------------------------------------------------------


def test_enqueue_then_decide_keeps_backlog_task(tmp_path: Path, orch_env: dict[str, str]) -> None:
    repo, _bare = make_repo(tmp_path)
    cfg = write_json(tmp_path / "demo.json", workspace_config(tmp_path, repo))
    task = "Fix the flaky login test"
    proc = orchestrate(["enqueue", str(cfg), task], orch_env)
    assert proc.returncode == 0, show(proc)
    decisions = []
    for _ in range(2):
        proc = orchestrate(["decide", str(cfg), "--json"], orch_env)
        assert proc.returncode == 0, show(proc)
        decisions.append(json.loads(proc.stdout)["decision"])
    for decision in decisions:
        assert decision["title"] == task, decision
        assert decision["task"].startswith(task), decision
        assert decision["agent"] == "claude-code"
    assert decisions[0]["op_hash"] == decisions[1]["op_hash"]


def test_decide_human_output_with_brackets_in_backlog_task(tmp_path: Path, orch_env: dict[str, str]) -> None:
    repo, _bare = make_repo(tmp_path)
    cfg = write_json(tmp_path / "demo.json", workspace_config(tmp_path, repo))
    task = "Fix routing of [/api] prefixes"
    assert orchestrate(["enqueue", str(cfg), task], orch_env).returncode == 0
    proc = orchestrate(["decide", str(cfg)], orch_env)
    assert proc.returncode == 0, show(proc)
    assert task in proc.stdout, show(proc)


def test_enqueue_empty_task_exits_2(tmp_path: Path, orch_env: dict[str, str]) -> None:
    cfg = write_json(tmp_path / "demo.json", {"workspace": {"repo": "r"}})
    proc = orchestrate(["enqueue", str(cfg), "   "], orch_env)
    assert proc.returncode == 2, show(proc)


def test_analyze_without_session_dirs(tmp_path: Path, orch_env: dict[str, str]) -> None:
    cfg = write_json(
        tmp_path / "demo.json",
        {
            "workspace": {"repo": str(tmp_path / "repo")},
            "sessions": {"claude_dir": str(tmp_path / "no-claude"), "codex_dir": str(tmp_path / "no-codex")},
        },
    )
    proc = orchestrate(["analyze", str(cfg), "--json"], orch_env)
    assert proc.returncode == 0, show(proc)
    data = json.loads(proc.stdout)
    assert data["sessions"] == 0
    assert set(data["providers"]) == {"claude-code", "codex"}
    assert all(p["sessions"] == 0 for p in data["providers"].values())


def test_schedule_prints_next_fires_in_config_timezone(tmp_path: Path, orch_env: dict[str, str]) -> None:
    cfg = write_json(
        tmp_path / "nightly.json",
        {
            "workspace": {"repo": "r"},
            "schedule": {"cron": "30 2 * * *", "timezone": "America/New_York"},
        },
    )
    proc = orchestrate(["schedule", str(cfg)], orch_env)
    assert proc.returncode == 0, show(proc)
    header, *lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert header.endswith("30 2 * * * in America/New_York, no window, jitter up to 0 s, on_missed skip"), header
    assert len(lines) == 5, show(proc)
    assert "02:30" in lines[0] and ("-05:00" in lines[0] or "-04:00" in lines[0]), lines[0]
    assert all("T02:30:00" in line and "outside" not in line for line in lines), lines
    windowed = write_json(
        tmp_path / "windowed.json",
        {"workspace": {"repo": "r"}, "schedule": {"cron": "0 * * * *", "window": {"start": "01:00", "end": "03:00"}}},
    )
    fires = orchestrate(["schedule", str(windowed), "-n", "24"], orch_env).stdout.splitlines()[1:]
    inside = [f for f in fires if "outside the window" not in f]
    assert len(fires) == 24 and sorted(f[11:16] for f in inside) == ["01:00", "02:00"], fires
    assert lines == sorted(lines) and len(set(lines)) == 5


def test_worker_with_unknown_agent_exits_2(orch_env: dict[str, str]) -> None:
    proc = orchestrate(["worker", "--agents", "bogus"], orch_env, timeout=20)
    assert proc.returncode == 2, show(proc)
    assert "bogus" in proc.stderr


def test_decide_json_lists_every_source_with_what_it_passed_over(tmp_path: Path, orch_env: dict[str, str]) -> None:
    from tests.fixtures.fake_gh import add_issue, set_collaborators

    repo, _bare = make_repo(tmp_path)
    install_fake_gh(tmp_path / "bin", tmp_path / "gh")
    set_collaborators(tmp_path / "gh", {"ghost-writer": "triage"})
    wanted = add_issue(tmp_path / "gh", "Fix the login page", "It 500s on empty passwords.", "octocat")
    other = add_issue(tmp_path / "gh", "Spam", "buy now", "ghost-writer")
    env = dict(orch_env, PATH=f"{tmp_path / 'bin'}:{orch_env['PATH']}")
    cfg = write_json(tmp_path / "demo.json", workspace_config(tmp_path, repo, issues={"enabled": True}))
    proc = orchestrate(["decide", str(cfg), "--json"], env)
    assert proc.returncode == 0, show(proc)
    out = json.loads(proc.stdout)
    assert out["decision"]["issue"] == wanted and out["decision"]["title"] == f"#{wanted}: Fix the login page"
    sources = out["sources"]
    assert list(sources) == ["backlog", "issues", "goals", "sessions", "chores"]
    assert sources["issues"] == {
        "candidates": [f"#{wanted}: Fix the login page"],
        "passed_over": [{"what": f"#{other}", "reason": "opened by ghost-writer, who has no write access (read)"}],
        "error": None,
    }
    assert sources["goals"]["candidates"] == ["Write orchestrated.txt"]
    assert sources["chores"]["candidates"] == ["Raise test coverage", "Fix warnings"]
    # The human output says when a source was skipped, and why.
    from tests.fixtures.fake_gh import set_mode

    set_mode(tmp_path / "gh", "unauthenticated")
    human = orchestrate(["decide", str(cfg)], env)
    assert human.returncode == 0, show(human)
    assert "source issues skipped: gh_not_authenticated: gh issue list" in human.stdout
    assert "Write orchestrated.txt" in human.stdout


def test_analyze_shows_the_work_left_failing(tmp_path: Path, orch_env: dict[str, str]) -> None:
    from tests.e2e.test_issue_cycles import failing_history

    repo, _bare = make_repo(tmp_path)
    failing_history(tmp_path / "claude", repo)
    sessions = {"claude_dir": str(tmp_path / "claude"), "codex_dir": str(tmp_path / "none"), "since_days": 3650}
    cfg = write_json(tmp_path / "demo.json", workspace_config(tmp_path, repo, sessions=sessions))
    proc = orchestrate(["analyze", str(cfg)], orch_env)
    assert proc.returncode == 0, show(proc)
    assert "still failing: pytest tests/test_app.py: tests/test_app.py (3 of 3 runs, 1 session)" in proc.stdout
    data = json.loads(orchestrate(["analyze", str(cfg), "--json"], orch_env).stdout)
    [work] = data["work"]
    assert (work["kind"], work["target"], work["failures"], work["request"]) == (
        "failing",
        "pytest tests/test_app.py",
        3,
        "make the app tests pass",
    )
