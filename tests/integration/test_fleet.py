"""Two simulated hosts on one broker, each with its own state directory and `--hostname`: the steps that
touch a cycle's worktree run on the host that made it, so a step sent anywhere else would fail the cycle
(`worktree_missing`) and this test."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.fake_gh import install_fake_gh, read_calls
from tests.helpers import ROOT, isolated_env, make_repo, orchestrate, orchestrate_process, sh

FAKE_CLAUDE = ROOT / "tests" / "fixtures" / "fake_claude.py"
pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

WORKTREE_STEPS = ("orchestrate.op.shell.run", "orchestrate.op.git.commit", "orchestrate.op.pr.create")


def host_worker(env: dict[str, str], tmp: Path, host: str, agents: str, *extra: str):  # type: ignore[no-untyped-def]
    args = ["worker", "--agents", agents, "-c", "1", "--without-gossip", "--without-mingle", "-n", f"w@{host}", *extra]
    host_env = dict(env, ORCH_STATE_DIR=str(tmp / f"state-{host}"))
    return orchestrate_process(args, host_env, tmp / f"{host}.log", ready=b" ready.")


def workspace(tmp: Path, orch_env: dict[str, str], name: str, **config: Any) -> tuple[Path, Path, dict[str, str]]:
    """A repository with its bare remote, a recording `gh` on PATH, and the config `name.json` (a stand-in
    agent, no session history, the given fields on top); returns the config, the remote and the env."""
    repo, bare = make_repo(tmp)
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    install_fake_gh(bin_dir, tmp / "gh")
    env = dict(orch_env, PATH=f"{bin_dir}:{orch_env['PATH']}")
    data = {
        "id": name,
        "workspace": {"repo": str(repo)},
        "budget": {"cycle_s": 120, "idle_timeout_s": 60},
        "sessions": {"claude_dir": str(tmp / "none"), "codex_dir": str(tmp / "none")},
        "goals": ["Write orchestrated.txt"],
        "agents": {"allow": ["claude-code"], "claude-code": {"command": str(FAKE_CLAUDE)}},
        **config,
    }
    cfg = tmp / f"{name}.json"
    cfg.write_text(json.dumps(data))
    return cfg, bare, env


@dataclass
class Hosts:
    """Two hosts' workers shared by the cases that need just these two: host-a has claude-code and takes no
    shared work (-X orchestrate); host-b has codex and takes the shared queue."""

    env: dict[str, str]
    tmp: Path
    start: dict[str, int] = field(default_factory=dict)  # where the current case's part of each log begins

    def log(self, host: str) -> Path:
        return self.tmp / f"{host}.log"

    def case_logs(self) -> dict[str, str]:
        """What each host logged since the current case began."""
        return {h: self.log(h).read_bytes()[n:].decode(errors="replace") for h, n in self.start.items()}


@pytest.fixture(scope="module")
def shared_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    """Their own redis-server and a recording `gh` on PATH (`isolated_env`)."""
    tmp = tmp_path_factory.mktemp("fleet-hosts")
    with (
        isolated_env(tmp, ORCH_ALLOW="shell") as env,
        host_worker(env, tmp, "host-a", "claude-code", "-X", "orchestrate"),
        host_worker(env, tmp, "host-b", "codex"),
    ):
        yield Hosts(env, tmp)


@pytest.fixture
def hosts(shared_hosts: Hosts) -> Hosts:
    shared_hosts.start = {h: shared_hosts.log(h).stat().st_size for h in ("host-a", "host-b")}
    return shared_hosts


def test_steps_after_the_agent_run_on_the_host_that_holds_the_worktree(tmp_path: Path, hosts: Hosts) -> None:
    cfg, bare, env = workspace(
        tmp_path,
        hosts.env,
        "fleet",
        permissions={"shell": ["python3"]},
        pipeline=[
            {"op": "session.analyze", "as": "insights"},
            {"op": "orchestrate.decide", "as": "decision"},
            {"op": "agent.execute", "as": "run"},
            {"op": "shell.run", "with": {"command": ["python3", "-c", "open('tested.txt', 'w').write('ok')"]}},
            {"op": "git.commit", "with": {"message": "tests ran"}},
            {"op": "pr.create", "as": "pr"},
        ],
    )
    # host-a has the agent and takes no shared work (-X orchestrate); host-b takes the shared queue only.
    proc = orchestrate(["run", str(cfg), "--json"], env)
    workers = orchestrate(["workers"], env)
    logs = hosts.case_logs()
    assert proc.returncode == 0, proc.stdout + proc.stderr + logs["host-a"][-3000:] + logs["host-b"][-3000:]
    report = json.loads(proc.stdout)
    assert [s["status"] for s in report["steps"]] == ["succeeded"] * 6, report["steps"]
    # `workers` lists both hosts by their heartbeats, with their agents and queues.
    rows = [line for line in workers.stdout.splitlines() if "host-" in line]
    assert any("host-a" in row and "claude-code" in row for row in rows), workers.stdout
    assert any("host-b" in row and "codex" in row for row in rows), workers.stdout
    table = orchestrate(["status"], env).stdout
    assert report["cycle_id"] in table and "succeeded" in table and "finished" in table, table
    assert report["pr"]["status"] == "created"
    assert any(report["cycle_id"] in str(c.get("stdin")) for c in read_calls(hosts.tmp / "gh"))  # its own PR

    # Who ran what: the shared steps on host-b, the agent and everything after it on host-a.
    assert "worker queues: orchestrate,agent.claude-code,host.host-a" in hosts.log("host-a").read_text()
    assert "worker queues: orchestrate,agent.codex,host.host-b" in hosts.log("host-b").read_text()
    for name in ("orchestrate.start", "orchestrate.op.session.analyze", "orchestrate.op.orchestrate.decide"):
        assert f"Task {name}[" in logs["host-b"] and f"Task {name}[" not in logs["host-a"], name
    for name in ("orchestrate.op.agent.execute", *WORKTREE_STEPS, "orchestrate.finish"):
        assert f"Task {name}[" in logs["host-a"], name
        assert f"Task {name}[" not in logs["host-b"], name
    assert not (hosts.tmp / "state-host-b" / "worktrees" / report["cycle_id"]).exists()

    # The branch holds the agent's file, the command's file, and the step's commit.
    branch = report["branch"]
    files = sh(["git", "--git-dir", str(bare), "ls-tree", "--name-only", branch], tmp_path).split()
    assert {"orchestrated.txt", "tested.txt"} <= set(files)
    assert sh(["git", "--git-dir", str(bare), "log", "-1", "--format=%s", branch], tmp_path) == "tests ran"
    status = json.loads(orchestrate(["status", report["cycle_id"], "--json"], env).stdout)
    assert status["status"] == "succeeded"


def test_the_fallback_agent_runs_on_a_host_that_has_it(tmp_path: Path, hosts: Hosts) -> None:
    """codex is preferred but cannot start on host-b (its command is missing there): the step is handed to
    queue agent.claude-code, which only host-a consumes; the worktree, the work and the PR are host-a's."""
    cfg, bare, env = workspace(
        tmp_path,
        hosts.env,
        "fallback",
        decision={"backend": "heuristic"},
        agents={
            "allow": ["codex", "claude-code"],
            "prefer": "codex",
            "codex": {"command": str(tmp_path / "no-such-codex")},
            "claude-code": {"command": str(FAKE_CLAUDE)},
        },
    )
    proc = orchestrate(["run", str(cfg), "--json"], env)
    logs = hosts.case_logs()
    assert proc.returncode == 0, proc.stdout + proc.stderr + logs["host-a"][-3000:] + logs["host-b"][-3000:]
    report = json.loads(proc.stdout)
    assert report["decision"]["agent"] == "codex"
    assert (
        report["agent"]["fallback_from"] == "codex"
        and "failed before doing anything" in report["agent"]["fallback_reason"]
    )
    assert report["agent"]["files_changed"] == ["orchestrated.txt"] and report["pr"]["status"] == "created"
    # The execute step ran on both hosts (tried, then handed over); everything after it on host-a only.
    for host in ("host-a", "host-b"):
        assert "Task orchestrate.op.agent.execute[" in logs[host], host
    for name in ("orchestrate.op.pr.create", "orchestrate.finish"):
        assert f"Task {name}[" in logs["host-a"] and f"Task {name}[" not in logs["host-b"], name
    assert list((hosts.tmp / "state-host-b" / "worktrees").glob("*")) == []  # given up, not left behind
    assert "orchestrated.txt" in sh(
        ["git", "--git-dir", str(bare), "ls-tree", "--name-only", report["branch"]], tmp_path
    )


def test_a_dead_host_s_cycles_are_ended_or_resumed_elsewhere_and_its_work_saved_when_it_returns(
    tmp_path: Path, orch_env: dict[str, str]
) -> None:
    """host-a runs a silent agent ("dies") and has taken, not started, the agent step of a second cycle
    ("resumes": decided on host-b); then it is SIGKILLed whole and not restarted. Its guard kills the agent
    at once; host-b's janitor sees host-a's heartbeat expire and ends "dies" worker_lost, lock released, and
    gives the step host-a held back to its queue, where host-c takes it: "resumes" succeeds. When a worker
    starts on host-a again, it commits and pushes what "dies" left in its worktree."""
    import signal
    import time

    import redis

    from orchestration.keys import Keys
    from tests.helpers import live_with_marker, wait_for

    claude = {"command": str(FAKE_CLAUDE), "env": {"FAKE_CLAUDE_MODE": "hang"}}
    cfg, bare, env = workspace(
        tmp_path,
        orch_env,
        "dies",
        budget={"cycle_s": 300, "idle_timeout_s": 200},
        agents={"allow": ["claude-code"], "claude-code": claude},
        pr={"enabled": False},
    )
    (tmp_path / "w2").mkdir()
    cfg2, _bare2, _env2 = workspace(
        tmp_path / "w2", orch_env, "resumes", decision={"backend": "heuristic"}, pr={"enabled": False}
    )
    env["ORCH_HEARTBEAT_S"] = "1"
    r = redis.Redis.from_url(env["ORCH_REDIS_URL"])
    keys = Keys(env["ORCH_KEY_PREFIX"])
    with host_worker(env, tmp_path, "host-b", "codex") as _b:
        # host-a runs one task at a time but takes a second one from the broker while it works.
        prefetch = ("--prefetch-multiplier", "2")
        with host_worker(env, tmp_path, "host-a", "claude-code", "-X", "orchestrate", *prefetch) as a:
            queued = json.loads(orchestrate(["run", str(cfg), "--json", "--no-follow"], env).stdout)
            key, stream = keys.cycle(queued["cycle_id"]), keys.events(queued["cycle_id"])
            written = lambda: b"agent.file_change" in b"".join(f[b"event"] for _, f in r.xrange(stream))  # noqa: E731
            assert wait_for(written, 60)
            second = json.loads(orchestrate(["run", str(cfg2), "--json", "--no-follow"], env).stdout)["cycle_id"]
            taken = lambda: (tmp_path / "host-a.log").read_text().count("Task orchestrate.op.agent.execute[") >= 2  # noqa: E731
            assert wait_for(taken, 60), (tmp_path / "host-a.log").read_text()[-3000:]
            assert r.exists(keys.worker("host-a", "w@host-a")) and r.exists(keys.worker("host-b", "w@host-b"))
            with host_worker(env, tmp_path, "host-c", "claude-code", "-X", "orchestrate") as _c:
                os.killpg(a.pid, signal.SIGKILL)
                killed = time.monotonic()
                a.wait(10)
                assert wait_for(lambda: live_with_marker(str(FAKE_CLAUDE)) == [], timeout=10), "agent outlived its host"
                assert wait_for(lambda: r.hget(key, "finished_at") is not None, timeout=90), r.hgetall(key)
                assert time.monotonic() - killed < 90
                key2 = keys.cycle(second)
                assert wait_for(lambda: r.hget(key2, "finished_at") is not None, timeout=90), r.hgetall(key2)
                assert time.monotonic() - killed < 90
        assert (r.hget(key, "status"), r.hget(key, "reason")) == (b"failed", b"worker_lost")
        assert r.get(keys.lock("dies")) is None  # the workspace is free for the next cycle
        assert r.hget(key2, "status") == b"succeeded", r.hgetall(key2)
        assert "Task orchestrate.op.agent.execute[" in (tmp_path / "host-c.log").read_text()
        assert (
            "gave its step back to the queue"
            in (tmp_path / "host-b.log").read_text() + (tmp_path / "host-c.log").read_text()
        )
        report = json.loads(r.hget(key, "report"))
        branch = report["branch"]
        assert branch and branch not in sh(["git", "--git-dir", str(bare), "branch"], tmp_path)  # not saved yet
        # host-a comes back: its first janitor saves the dead cycle's work.
        with host_worker(env, tmp_path, "host-a", "claude-code", "-X", "orchestrate"):
            pushed = lambda: branch in sh(["git", "--git-dir", str(bare), "branch"], tmp_path)  # noqa: E731
            assert wait_for(pushed, timeout=30), (tmp_path / "host-a.log").read_text()[-3000:]
    log = sh(["git", "--git-dir", str(bare), "log", "-1", "--format=%s", branch], tmp_path)
    assert log.startswith("WIP:"), log
    files = sh(["git", "--git-dir", str(bare), "ls-tree", "--name-only", branch], tmp_path).split()
    assert "orchestrated.txt" in files


def test_a_cycle_whose_next_step_no_live_worker_takes_is_ended(tmp_path: Path, orch_env: dict[str, str]) -> None:
    """The only worker with the chosen agent (host-b) is SIGKILLed before the cycle gets to execute, while
    host-a lives: the execute step waits in agent.claude-code, which no live worker consumes. The cycle does
    not hang in `running`: host-a's janitor ends it worker_lost, lock released."""
    import signal
    import time

    import redis

    from orchestration.keys import Keys
    from tests.helpers import wait_for

    cfg, _bare, env = workspace(tmp_path, orch_env, "stalls", pr={"enabled": False})
    env["ORCH_HEARTBEAT_S"] = "1"
    r = redis.Redis.from_url(env["ORCH_REDIS_URL"])
    keys = Keys(env["ORCH_KEY_PREFIX"])
    with host_worker(env, tmp_path, "host-a", "codex") as _a:
        with host_worker(env, tmp_path, "host-b", "claude-code", "-X", "orchestrate") as b:
            assert wait_for(lambda: r.exists(keys.worker("host-b", "w@host-b")), timeout=10)
            os.killpg(b.pid, signal.SIGKILL)
            b.wait(10)
        started = time.monotonic()
        queued = json.loads(orchestrate(["run", str(cfg), "--json", "--no-follow"], env).stdout)
        key = keys.cycle(queued["cycle_id"])
        assert wait_for(lambda: r.hget(key, "finished_at") is not None, timeout=60), r.hgetall(key)
        assert time.monotonic() - started < 60
    assert (r.hget(key, "status"), r.hget(key, "reason")) == (b"failed", b"worker_lost"), r.hgetall(key)
    record = json.loads(r.hget(key, "ctx") or b"{}")
    assert "agent.claude-code" in (record.get("error") or ""), record.get("error")
    assert r.get(keys.lock("stalls")) is None
