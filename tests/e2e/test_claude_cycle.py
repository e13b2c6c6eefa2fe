"""The backbone end to end: a real prefork worker on a real Redis drives the real `claude` CLI (npm), which
talks to a scripted local model API and edits a file; the branch is pushed to a local bare remote and a draft
PR is opened through a recording stand-in for `gh`."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from orchestration.keys import Keys
from tests.fixtures.anthropic_server import ScriptedAnthropic, claude_env, write_file_script
from tests.fixtures.fake_gh import install_fake_gh, read_calls
from tests.helpers import NODE_BIN, celery_worker, live_with_marker, make_repo, orchestrate, sh

pytestmark = pytest.mark.e2e
CONTENT = "written by the real claude CLI, scripted\n"


def claude_binary() -> Path:
    path = NODE_BIN / "claude"
    if not path.exists():
        pytest.fail(
            f"{path} is missing: run `npm ci` (or `make install`) to install the pinned agent CLIs", pytrace=False
        )
    return path


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cc-"))  # claude puts a unix socket under $TMPDIR: keep it short
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(240)
def test_real_claude_cycle_through_worker(tmp_path: Path, orch_env: dict[str, str], short_tmp: Path) -> None:
    claude = claude_binary()
    repo, bare = make_repo(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    install_fake_gh(bin_dir, tmp_path / "gh")
    cfg_path = tmp_path / "demo.json"
    cfg_path.write_text(
        json.dumps(
            {
                "id": "demo",
                "workspace": {"repo": str(repo)},
                "budget": {"cycle_s": 180, "max_cost_usd": 5},
                "sessions": {"claude_dir": str(tmp_path / "home" / ".claude"), "codex_dir": str(tmp_path / "none")},
                "goals": ["Add a hello.txt greeting file"],
                "agents": {"allow": ["claude-code"], "claude-code": {"command": str(claude)}},
            }
        )
    )
    with ScriptedAnthropic(script=write_file_script("hello.txt", CONTENT)) as srv:
        env = {**orch_env, **claude_env(srv.base_url, tmp_path / "home", tmpdir=short_tmp)}
        env.update({k: orch_env[k] for k in orch_env if k.startswith("ORCH_") or k.startswith("PYTHON")})
        env["PATH"] = f"{bin_dir}:{NODE_BIN}:{orch_env['PATH']}"
        with celery_worker(env, tmp_path / "worker.log"):
            proc = orchestrate(["run", str(cfg_path), "--json"], env)
        assert srv.main_requests, "claude never reached the scripted model API"
    log = (tmp_path / "worker.log").read_text()
    assert proc.returncode == 0, proc.stdout + proc.stderr + log[-4000:]
    report = json.loads(proc.stdout)
    assert report["status"] == "succeeded"
    agent = report["agent"]
    assert agent["status"] == "succeeded" and agent["exit_code"] == 0
    assert agent["session_id"] and agent["num_turns"] >= 1 and agent["cost_usd"] > 0
    assert agent["files_changed"] == ["hello.txt"]
    assert agent["tokens"]["input"] > 0 and agent["tokens"]["output"] > 0

    # The branch on the remote holds the agent's change, with the cycle trailer.
    branch = report["branch"]
    assert sh(["git", "--git-dir", str(bare), "show", f"{branch}:hello.txt"], tmp_path) == CONTENT.strip()
    assert f"Orchestrate-Cycle: {report['cycle_id']}" in sh(
        ["git", "--git-dir", str(bare), "log", "-1", "--format=%B", branch], tmp_path
    )

    # The PR was created as a draft with the hidden marker, through `gh pr create`.
    assert report["pr"]["status"] == "created" and report["pr"]["draft"] is True
    creates = [c for c in read_calls(tmp_path / "gh") if c["argv"][:2] == ["pr", "create"]]
    assert len(creates) == 1 and "--draft" in creates[0]["argv"]
    assert f"<!-- orchestrate:cycle={report['cycle_id']} -->" in creates[0]["stdin"]

    # The events arrived in order, seq 1..n, with Claude's stream normalized into hub kinds.
    r = redis.Redis.from_url(env["ORCH_REDIS_URL"])
    rows = r.xrange(Keys(env["ORCH_KEY_PREFIX"]).events(report["cycle_id"]))
    events = [json.loads(f[b"event"]) for _, f in rows]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "cycle.queued" and kinds[-1] == "cycle.finished"
    calls = [e["data"] for e in events if e["kind"] == "agent.tool_call"]
    assert {"tool": "Write", "path": "hello.txt", "step": 2, "as": "run"} in calls  # the step that ran it
    assert any(e["kind"] == "agent.file_change" and e["data"]["path"] == "hello.txt" for e in events)
    assert any(e["kind"] == "agent.usage" and e["data"]["estimated"] is False for e in events)
    costs = [(e["data"]["estimated"], e["data"]["cost_usd"]) for e in events if e["kind"] == "agent.usage"]
    assert [c for est, c in costs if est] == sorted(c for est, c in costs if est)  # the live estimate never drops
    assert costs[-1] == (False, pytest.approx(agent["cost_usd"]))  # the run's cost is claude's total_cost_usd
    # The live estimate follows claude's own accounting (its model's rates, cache reads at the cached rate): it
    # ends just under the run's final figure (which adds claude's small side requests), never above it.
    estimates = [c for est, c in costs if est]
    assert 0.9 * costs[-1][1] <= estimates[-1] <= costs[-1][1], costs
    assert kinds.index("agent.started") < kinds.index("agent.tool_call") < kinds.index("agent.finished")

    # ... and a watcher after the end replays them all and exits 0.
    watched = orchestrate(["watch", report["cycle_id"]], env, timeout=30)
    assert watched.returncode == 0
    seqs = [int(line.split()[0]) for line in watched.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert seqs == list(range(1, len(events) + 1))
    # No claude process is left behind.
    assert live_with_marker(str(claude)) == []
