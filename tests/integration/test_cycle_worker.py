"""Whole cycles through a real prefork Celery worker on a real Redis server, with a stand-in agent."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import redis

from orchestration.keys import Keys
from orchestration.models import TaskRecord
from orchestration.state import RedisState
from tests.fixtures.fake_gh import install_fake_gh, read_calls
from tests.helpers import ROOT, celery_worker, live_with_marker, make_repo, orchestrate, sh, wait_for

FAKE_CLAUDE = ROOT / "tests" / "fixtures" / "fake_claude.py"
pytestmark = pytest.mark.integration


def write_config(tmp: Path, repo: Path, mode: str = "ok", **budget: int) -> Path:
    """The stand-in agent's mode reaches it the only way a variable reaches an agent: the config's env."""
    claude = {"command": str(FAKE_CLAUDE), "env": {"FAKE_CLAUDE_MODE": mode}}
    cfg = {
        "id": "demo",
        "workspace": {"repo": str(repo)},
        "budget": {"cycle_s": 120, "idle_timeout_s": 60, **budget},
        "sessions": {"claude_dir": str(tmp / "no-claude"), "codex_dir": str(tmp / "no-codex")},
        "goals": ["Write orchestrated.txt"],
        "agents": {"allow": ["claude-code"], "claude-code": claude},
    }
    path = tmp / "demo.json"
    path.write_text(json.dumps(cfg))
    return path


@pytest.fixture(params=["redis", "rabbitmq"])
def setup(request: pytest.FixtureRequest, tmp_path: Path, orch_env: dict[str, str]):  # type: ignore[no-untyped-def]
    """Every test here runs twice: on the Redis broker, and on RabbitMQ with Redis for the hub and state."""
    repo, bare = make_repo(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    install_fake_gh(bin_dir, tmp_path / "gh")
    env = dict(orch_env, PATH=f"{bin_dir}:{orch_env['PATH']}")
    if request.param == "rabbitmq":
        env["ORCH_BROKER_URL"] = request.getfixturevalue("amqp_url")
    return tmp_path, repo, bare, env


def test_cycle_succeeds_pushes_and_opens_draft_pr(setup) -> None:  # type: ignore[no-untyped-def]
    tmp, repo, bare, env = setup
    cfg = write_config(tmp, repo)
    with celery_worker(env, tmp / "worker.log"):
        proc = orchestrate(["run", str(cfg), "--json"], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr + (tmp / "worker.log").read_text()[-4000:]
    transport = "amqp://guest:**@127.0.0.1:5672/" if "ORCH_BROKER_URL" in env else "redis://:**@127.0.0.1:"
    assert f"transport:   {transport}" in (tmp / "worker.log").read_text()  # the broker this run is about
    report = json.loads(proc.stdout)
    assert report["status"] == "succeeded" and report["reason"] is None
    assert report["agent"]["status"] == "succeeded"
    assert report["agent"]["files_changed"] == ["orchestrated.txt"]
    assert report["pr"]["status"] == "created" and report["pr"]["draft"] is True
    branch = report["branch"]
    assert "written by the fake agent" in sh(["git", "--git-dir", str(bare), "show", f"{branch}:orchestrated.txt"], tmp)
    create = [c for c in read_calls(tmp / "gh") if c["argv"][:2] == ["pr", "create"]]
    assert len(create) == 1 and "--draft" in create[0]["argv"]
    assert f"<!-- orchestrate:cycle={report['cycle_id']} -->" in create[0]["stdin"]
    # The user's checkout is untouched.
    assert sh(["git", "status", "--porcelain"], repo) == ""
    assert sh(["git", "rev-parse", "--abbrev-ref", "HEAD"], repo) == "main"

    r = redis.Redis.from_url(env["ORCH_REDIS_URL"])
    rows = r.xrange(Keys(env["ORCH_KEY_PREFIX"]).events(report["cycle_id"]))
    events = [json.loads(fields[b"event"]) for _, fields in rows]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "cycle.queued" and kinds[-1] == "cycle.finished"
    for kind in (
        "cycle.started",
        "decision.made",
        "agent.started",
        "agent.tool_call",
        "agent.file_change",
        "agent.finished",
        "pr.opened",
    ):
        assert kind in kinds, kind
    stages = [e["stage"] for e in events if e["kind"] == "stage.started"]
    assert stages == ["start", "analyze", "decide", "execute", "publish", "finish"]

    # A late watcher replays the whole stream and exits when the cycle has ended.
    watched = orchestrate(["watch", report["cycle_id"]], env, timeout=30)
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout.count("\n") >= len(events)
    assert "cycle.finished" in watched.stdout
    status = orchestrate(["status", report["cycle_id"], "--json"], env, timeout=30)
    assert json.loads(status.stdout)["pr"]["url"] == report["pr"]["url"]


def test_two_cycles_at_once_one_runs_one_is_locked(setup) -> None:  # type: ignore[no-untyped-def]
    tmp, repo, _bare, env = setup
    cfg = write_config(tmp, repo, mode="slow")  # keeps the first cycle busy until it is cancelled
    with celery_worker(env, tmp / "worker.log", concurrency=2):
        a = json.loads(orchestrate(["run", str(cfg), "--json", "--no-follow"], env).stdout)
        b = json.loads(orchestrate(["run", str(cfg), "--json", "--no-follow"], env).stdout)
        r = redis.Redis.from_url(env["ORCH_REDIS_URL"])
        prefix = env["ORCH_KEY_PREFIX"]

        def status(cid: str) -> str:
            return (r.hget(Keys(prefix).cycle(cid), "status") or b"").decode()

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "skipped" not in (status(a["cycle_id"]), status(b["cycle_id"])):
            time.sleep(0.2)
        statuses = sorted([status(a["cycle_id"]), status(b["cycle_id"])])
        assert statuses == ["running", "skipped"], statuses
        skipped = a if status(a["cycle_id"]) == "skipped" else b
        running = b if skipped is a else a
        assert (r.hget(Keys(prefix).cycle(skipped["cycle_id"]), "reason") or b"").decode() == "locked"
        assert orchestrate(["cancel", running["cycle_id"]], env).returncode == 0
        watched = orchestrate(["watch", running["cycle_id"]], env, timeout=60)
        assert watched.returncode == 1
    assert status(running["cycle_id"]) == "cancelled"
    assert r.get(Keys(prefix).lock("demo")) is None


def test_hanging_agent_times_out_within_budget_and_keeps_work(setup) -> None:  # type: ignore[no-untyped-def]
    tmp, repo, bare, env = setup
    budget = 10
    cfg = write_config(tmp, repo, mode="hang", cycle_s=budget, idle_timeout_s=300)
    with celery_worker(env, tmp / "worker.log"):
        t0 = time.monotonic()
        proc = orchestrate(["run", str(cfg), "--json"], env)
        elapsed = time.monotonic() - t0
    report = json.loads(proc.stdout)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert report["status"] == "timed_out" and report["reason"] == "deadline"
    assert elapsed < budget + 30, elapsed
    assert report["duration_s"] < budget + 30
    assert live_with_marker(str(FAKE_CLAUDE)) == []
    branch = report["branch"]
    log = sh(["git", "--git-dir", str(bare), "log", "-1", "--format=%s", branch], tmp)
    assert log.startswith("WIP:")
    assert "written by the fake agent" in sh(["git", "--git-dir", str(bare), "show", f"{branch}:orchestrated.txt"], tmp)
    assert report["pr"]["status"] == "skipped" and report["pr"]["reason"] == "cycle_timed_out"


def test_stage_error_ends_cycle_failed_and_releases_lock(setup) -> None:  # type: ignore[no-untyped-def]
    tmp, repo, _bare, env = setup
    cfg = write_config(tmp, repo)
    data = json.loads(cfg.read_text())
    data["workspace"]["base_branch"] = "no-such-branch"
    cfg.write_text(json.dumps(data))
    with celery_worker(env, tmp / "worker.log"):
        proc = orchestrate(["run", str(cfg), "--json"], env)
    report = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert report["status"] == "failed" and report["reason"] == "stage_error"
    r = redis.Redis.from_url(env["ORCH_REDIS_URL"])
    assert r.get(Keys(env["ORCH_KEY_PREFIX"]).lock("demo")) is None
    assert "Traceback" not in proc.stderr


def test_killed_worker_child_ends_cycle_worker_lost_and_reaps_agent(setup) -> None:  # type: ignore[no-untyped-def]
    tmp, repo, _bare, env = setup
    cfg = write_config(tmp, repo, mode="slow")
    r = redis.Redis.from_url(env["ORCH_REDIS_URL"])
    prefix = env["ORCH_KEY_PREFIX"]
    with celery_worker(env, tmp / "worker.log"):
        queued = json.loads(orchestrate(["run", str(cfg), "--json", "--no-follow"], env).stdout)
        key = Keys(prefix).cycle(queued["cycle_id"])
        stream = Keys(prefix).events(queued["cycle_id"])
        # Kill only once the agent has written something, so there is work to save.
        assert wait_for(lambda: b"agent.file_change" in b"".join(f[b"event"] for _, f in r.xrange(stream)), 60)
        pid = r.hget(key, "agent_pid")
        assert pid, r.hgetall(key)
        agent_pid = int(pid)
        stat = Path(f"/proc/{agent_pid}/stat").read_text()
        pool_child = int(stat.rsplit(")", 1)[1].split()[1])  # the agent's parent: the prefork child
        os.kill(pool_child, signal.SIGKILL)
        status = wait_for(lambda: r.hget(key, "finished_at") and r.hget(key, "status"), timeout=60)
        assert status == b"failed", r.hgetall(key)
        assert r.hget(key, "reason") == b"worker_lost"
        assert wait_for(lambda: live_with_marker(str(FAKE_CLAUDE)) == [], timeout=15)
        assert r.get(Keys(prefix).lock("demo")) is None
        report = json.loads(r.hget(key, "report"))
    # The agent's work was committed on the cycle branch (WIP) before the cycle was closed.
    clone = Path(env["ORCH_STATE_DIR"]) / "mirrors" / "demo"  # cycles work in a private clone
    log = sh(["git", "log", "-1", "--format=%s", report["branch"]], clone)
    assert log.startswith("WIP:"), log


def test_execute_is_routed_to_the_queue_of_the_agent_decide_chose(setup) -> None:  # type: ignore[no-untyped-def]
    """The canvas first routes execute to the preferred agent's queue (codex); decide picks claude-code
    (codex has failed here again and again) and re-routes execute. This worker consumes only
    agent.claude-code, so the cycle can only finish if the re-routing works."""
    tmp, repo, _bare, env = setup
    cfg = write_config(tmp, repo)
    data = json.loads(cfg.read_text())
    data["agents"].update({"allow": ["claude-code", "codex"], "prefer": "codex"})
    data["decision"] = {"backend": "heuristic"}
    cfg.write_text(json.dumps(data))
    r = redis.Redis.from_url(env["ORCH_REDIS_URL"])
    state = RedisState(r, env["ORCH_KEY_PREFIX"])
    for i in range(4):
        state.record_task("demo", TaskRecord(op_hash=f"old{i}", agent="codex", status="failed", at=time.time()))
        state.record_task("demo", TaskRecord(op_hash=f"ok{i}", agent="claude-code", status="succeeded", at=time.time()))
    with celery_worker(env, tmp / "worker.log", agents="claude-code"):
        proc = orchestrate(["run", str(cfg), "--json"], env, timeout=90)
    report = json.loads(proc.stdout)
    assert report["status"] == "succeeded", report
    assert report["decision"]["agent"] == "claude-code"


def test_whole_worker_killed_then_janitor_on_restart(setup) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL of the worker's whole process group: no error callback runs. The agent is in its own session,
    but its guard (tied to the worker child that started it) kills it at once, with nobody's help; the next
    worker's janitor saves its work and ends the cycle."""
    tmp, repo, _bare, env = setup
    cfg = write_config(tmp, repo, mode="hang")  # silent: no broken pipe would end it
    r = redis.Redis.from_url(env["ORCH_REDIS_URL"])
    prefix = env["ORCH_KEY_PREFIX"]
    with celery_worker(env, tmp / "worker.log") as worker:
        queued = json.loads(orchestrate(["run", str(cfg), "--json", "--no-follow"], env).stdout)
        key = Keys(prefix).cycle(queued["cycle_id"])
        stream = Keys(prefix).events(queued["cycle_id"])
        assert wait_for(lambda: b"agent.file_change" in b"".join(f[b"event"] for _, f in r.xrange(stream)), 60)
        agent_pid = int(r.hget(key, "agent_pid"))
        os.killpg(worker.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        worker.wait(10)
    assert wait_for(lambda: live_with_marker(str(FAKE_CLAUDE)) == [], timeout=10), "the agent outlived its worker"
    assert time.monotonic() - killed_at < 10
    assert r.hget(key, "finished_at") is None
    with celery_worker(env, tmp / "worker2.log"):
        status = wait_for(lambda: r.hget(key, "finished_at") and r.hget(key, "status"), timeout=30)
    assert status == b"failed" and r.hget(key, "reason") == b"worker_lost", r.hgetall(key)
    assert wait_for(lambda: live_with_marker(str(FAKE_CLAUDE)) == [], timeout=10)
    assert not Path(f"/proc/{agent_pid}").exists() or "Z" in Path(f"/proc/{agent_pid}/stat").read_text()
    assert r.get(Keys(prefix).lock("demo")) is None
    report = json.loads(r.hget(key, "report"))
    clone = Path(env["ORCH_STATE_DIR"]) / "mirrors" / "demo"  # cycles work in a private clone
    assert sh(["git", "log", "-1", "--format=%s", report["branch"]], clone).startswith("WIP:")


def test_worker_enforces_its_own_ceiling_whatever_the_sender_allows(setup) -> None:  # type: ignore[no-untyped-def]
    """A config asking for bypassPermissions, sent by a client whose ORCH_ALLOW permits it, to a worker
    whose ORCH_ALLOW does not: the cycle ends failed / policy_denied and no agent ever starts."""
    tmp, repo, bare, env = setup
    path = write_config(tmp, repo)
    cfg = json.loads(path.read_text())
    cfg["agents"]["claude-code"]["permission_mode"] = "bypassPermissions"
    path.write_text(json.dumps(cfg))
    worker_env = {k: v for k, v in env.items() if k != "ORCH_ALLOW"}
    with celery_worker(worker_env, tmp / "worker.log"):
        proc = orchestrate(["run", str(path), "--json"], dict(env, ORCH_ALLOW="bypass"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["status"] == "failed" and report["reason"] == "policy_denied"
    assert report["agent"] is None and report["branch"] is None
    r = redis.Redis.from_url(env["ORCH_REDIS_URL"])
    rows = r.xrange(Keys(env["ORCH_KEY_PREFIX"]).events(report["cycle_id"]))
    events = [json.loads(fields[b"event"]) for _, fields in rows]
    assert not [e for e in events if e["kind"].startswith("agent.")]
    [failed] = [e for e in events if e["kind"] == "stage.failed"]
    assert "bypassPermissions" in failed["data"]["error"] and failed["stage"] == "start"
    assert sh(["git", "--git-dir", str(bare), "for-each-ref", "refs/heads/agent"], tmp) == ""
    assert r.get(Keys(env["ORCH_KEY_PREFIX"]).lock("demo")) is None
