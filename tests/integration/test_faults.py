"""Faults on purpose, with real processes: Redis restarted under a running cycle."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from orchestration.keys import Keys
from tests.fixtures.fake_gh import install_fake_gh
from tests.helpers import ROOT, celery_worker, make_repo, redis_server, sh, wait_for

FAKE_CLAUDE = ROOT / "tests" / "fixtures" / "fake_claude.py"
pytestmark = pytest.mark.integration


def cli(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "orchestration.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.timeout(180)
def test_redis_restarted_mid_execute_the_agent_runs_on_and_the_cycle_completes(
    tmp_path: Path, orch_env: dict[str, str]
) -> None:
    """Redis (AOF on) is stopped for two seconds while the agent works. The agent never notices: its events
    wait in the worker and go out when Redis is back, `seq` never repeats nor goes back; `run` and `watch`
    reconnect and follow to the end; the cycle succeeds, the lock is released and the branch pushed."""
    (tmp_path / "redis").mkdir()
    repo, bare = make_repo(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    install_fake_gh(bin_dir, tmp_path / "gh")
    claude = {"command": str(FAKE_CLAUDE), "env": {"FAKE_CLAUDE_MODE": "steady", "FAKE_CLAUDE_SECONDS": "8"}}
    config = {
        "id": "restart",
        "workspace": {"repo": str(repo)},
        "budget": {"cycle_s": 120, "idle_timeout_s": 60},
        "sessions": {"claude_dir": str(tmp_path / "none"), "codex_dir": str(tmp_path / "none")},
        "goals": ["Write orchestrated.txt"],
        "decision": {"backend": "heuristic"},
        "agents": {"allow": ["claude-code"], "claude-code": claude},
    }
    cfg = tmp_path / "restart.json"
    cfg.write_text(json.dumps(config))
    with redis_server(tmp_path / "redis", aof=True) as server:
        env = dict(orch_env, ORCH_REDIS_URL=server.url, PATH=f"{bin_dir}:{orch_env['PATH']}")
        r = redis.Redis.from_url(server.url)
        keys = Keys(env["ORCH_KEY_PREFIX"])
        with celery_worker(env, tmp_path / "worker.log") as worker:
            run = cli(["run", str(cfg), "--json"], env, tmp_path / "run.out")
            try:
                ids = wait_for(lambda: r.zrange(keys.cycles("restart"), 0, 0), timeout=60)
                assert ids, (tmp_path / "run.out").read_text()
                cycle_id = ids[0].decode()
                watch = cli(["watch", cycle_id], env, tmp_path / "watch.out")
                stream = keys.events(cycle_id)
                working = lambda: sum(b"step " in f[b"event"] for _, f in r.xrange(stream)) >= 3  # noqa: E731
                assert wait_for(working, timeout=60), (tmp_path / "worker.log").read_text()[-3000:]
                server.stop()
                time.sleep(2)
                server.start()
                assert run.wait(120) == 0, (tmp_path / "run.out").read_text()[-3000:]
                assert watch.wait(30) == 0, (tmp_path / "watch.out").read_text()[-3000:]
                assert worker.poll() is None  # the worker rode the restart out
            finally:
                for proc in (run, locals().get("watch")):
                    if proc is not None and proc.poll() is None:
                        proc.kill()
                        proc.wait()
        report = json.loads((tmp_path / "run.out").read_text()[(tmp_path / "run.out").read_text().index("{") :])
        assert report["status"] == "succeeded", report
        events = [json.loads(f[b"event"]) for _, f in r.xrange(stream)]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        steps = [
            e["data"]["text"] for e in events if e["kind"] == "agent.message" and "step " in e["data"].get("text", "")
        ]
        assert steps == [f"step {n}" for n in range(1, len(steps) + 1)] and len(steps) >= 12, steps
        assert events[-1]["kind"] == "cycle.finished"
        assert r.get(keys.lock("restart")) is None
    assert "Unrecoverable error" not in (tmp_path / "worker.log").read_text()
    assert "cycle.finished" in (tmp_path / "watch.out").read_text()
    assert report["branch"] in sh(["git", "--git-dir", str(bare), "branch"], tmp_path)
