"""Faults on purpose, with real processes: Redis restarted under a running cycle."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from orchestration.keys import Keys
from tests.fixtures.fake_gh import install_fake_gh
from tests.helpers import ROOT, celery_worker, cli_process, make_repo, orchestrate, redis_server, sh, wait_for

FAKE_CLAUDE = ROOT / "tests" / "fixtures" / "fake_claude.py"
pytestmark = pytest.mark.integration


def steady_workspace(tmp_path: Path, name: str, seconds: int) -> tuple[Path, Path, Path]:
    """A repository with its bare remote, a recording `gh` in `bin/`, and config `name.json` whose stand-in
    agent works `seconds` (an event every half second), then succeeds. Returns config, remote and bin dir."""
    (tmp_path / "redis").mkdir()
    repo, bare = make_repo(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    install_fake_gh(bin_dir, tmp_path / "gh")
    claude = {"command": str(FAKE_CLAUDE), "env": {"FAKE_CLAUDE_MODE": "steady", "FAKE_CLAUDE_SECONDS": str(seconds)}}
    config = {
        "id": name,
        "workspace": {"repo": str(repo)},
        "budget": {"cycle_s": 120, "idle_timeout_s": 60},
        "sessions": {"claude_dir": str(tmp_path / "none"), "codex_dir": str(tmp_path / "none")},
        "goals": ["Write orchestrated.txt"],
        "decision": {"backend": "heuristic"},
        "agents": {"allow": ["claude-code"], "claude-code": claude},
    }
    cfg = tmp_path / f"{name}.json"
    cfg.write_text(json.dumps(config))
    return cfg, bare, bin_dir


@pytest.mark.timeout(180)
def test_redis_restarted_mid_execute_the_agent_runs_on_and_the_cycle_completes(
    tmp_path: Path, orch_env: dict[str, str]
) -> None:
    """Redis (AOF on) is stopped for two seconds while the agent works. The agent never notices: its events
    wait in the worker and go out when Redis is back, `seq` never repeats nor goes back; `run` and `watch`
    reconnect and follow to the end; the cycle succeeds, the lock is released and the branch pushed."""
    cfg, bare, bin_dir = steady_workspace(tmp_path, "restart", 8)
    with redis_server(tmp_path / "redis", aof=True) as server:
        env = dict(orch_env, ORCH_REDIS_URL=server.url, PATH=f"{bin_dir}:{orch_env['PATH']}")
        r = redis.Redis.from_url(server.url)
        keys = Keys(env["ORCH_KEY_PREFIX"])
        with celery_worker(env, tmp_path / "worker.log") as worker:
            run = cli_process(["run", str(cfg), "--json"], env, tmp_path / "run.out")
            try:
                ids = wait_for(lambda: r.zrange(keys.cycles("restart"), 0, 0), timeout=60)
                assert ids, (tmp_path / "run.out").read_text()
                cycle_id = ids[0].decode()
                watch = cli_process(["watch", cycle_id], env, tmp_path / "watch.out")
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


@pytest.mark.timeout(180)
def test_redis_losing_everything_mid_execute_the_cycle_reclaims_its_lock_and_record(
    tmp_path: Path, orch_env: dict[str, str]
) -> None:
    """Redis restarted without persistence while the agent works: everything in it is gone. The running
    cycle takes its workspace lock again (a cycle sent to that workspace meanwhile ends `skipped`/`locked`)
    and writes its record again; its events go on numbering above what it had sent; it ends with a status
    and a reason, its work pushed, and its lock released."""
    cfg, bare, bin_dir = steady_workspace(tmp_path, "amnesia", 10)
    with redis_server(tmp_path / "redis", aof=False) as server:
        env = dict(orch_env, ORCH_REDIS_URL=server.url, PATH=f"{bin_dir}:{orch_env['PATH']}")
        r = redis.Redis.from_url(server.url)
        keys = Keys(env["ORCH_KEY_PREFIX"])
        with celery_worker(env, tmp_path / "worker.log") as worker:
            first = json.loads(orchestrate(["run", str(cfg), "--json", "--no-follow"], env).stdout)["cycle_id"]
            stream, record = keys.events(first), keys.cycle(first)
            working = lambda: sum(b"step " in f[b"event"] for _, f in r.xrange(stream)) >= 3  # noqa: E731
            assert wait_for(working, timeout=60), (tmp_path / "worker.log").read_text()[-3000:]
            sent_before = r.xlen(stream)
            server.stop()
            server.start()  # empty
            assert wait_for(lambda: r.exists(keys.lock("amnesia")) and r.exists(record), timeout=15), "not reclaimed"
            second = orchestrate(["run", str(cfg), "--json", "--no-follow"], env)
            assert second.returncode == 0, second.stdout + second.stderr
            other = keys.cycle(json.loads(second.stdout)["cycle_id"])
            assert wait_for(lambda: r.hget(other, "finished_at") is not None, timeout=30), r.hgetall(other)
            assert (r.hget(other, "status"), r.hget(other, "reason")) == (b"skipped", b"locked")
            assert wait_for(lambda: r.hget(record, "finished_at") is not None, timeout=60), r.hgetall(record)
            assert worker.poll() is None
        events = [json.loads(f[b"event"]) for _, f in r.xrange(stream)]
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(set(seqs)) and seqs[0] > sent_before, seqs[:5]  # numbering went on, never back
        assert events[-1]["kind"] == "cycle.finished" and events[-1]["data"]["status"] == "succeeded", events[-1]
        assert r.hget(record, "status") == b"succeeded" and r.get(keys.lock("amnesia")) is None
        report = json.loads(r.hget(record, "report"))
    assert "Unrecoverable error" not in (tmp_path / "worker.log").read_text()
    assert report["branch"] in sh(["git", "--git-dir", str(bare), "branch"], tmp_path)
