"""More faults on purpose, with real processes: the broker unreachable when a cycle is sent, a worker
stopped with SIGTERM while its agent works, and `gh` or `git push` that never answer during publish."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import redis

from orchestration.keys import Keys
from orchestration.lifecycle import GRACE_S
from orchestration.models import CycleRecord, Status
from orchestration.state import RedisState
from tests.helpers import (
    ROOT,
    celery_worker,
    cli_process,
    free_port,
    live_with_marker,
    orchestrate,
    orchestrate_process,
    sh,
    wait_for,
)
from tests.integration.test_fleet import workspace

FAKE_CLAUDE = ROOT / "tests" / "fixtures" / "fake_claude.py"
pytestmark = pytest.mark.integration


def state_of(env: dict[str, str]) -> tuple[redis.Redis, Keys, RedisState]:
    client = redis.Redis.from_url(env["ORCH_REDIS_URL"])
    return client, Keys(env["ORCH_KEY_PREFIX"]), RedisState(client, env["ORCH_KEY_PREFIX"])


def records(env: dict[str, str], workspace_id: str) -> list[CycleRecord]:
    client, keys, state = state_of(env)
    ids = [bytes(raw).decode() for raw in cast(list[bytes], client.zrange(keys.cycles(workspace_id), 0, -1))]
    return [r for r in (state.get_cycle(i) for i in ids) if r is not None]


def events(env: dict[str, str], cycle_id: str) -> list[dict[str, object]]:
    client, keys, _ = state_of(env)
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(keys.events(cycle_id)))
    return [json.loads(fields[b"event"]) for _, fields in entries]


def report_of(text: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(text[text.index("{") :])
    return data


# -- the broker unreachable ----------------------------------------------------------------------------


@contextlib.contextmanager
def broker_port(peer: str) -> Iterator[int]:
    """A loopback port where no broker answers: `closed` (nothing listens: refused at once) or `silent` (the
    kernel accepts the connection, nothing ever reads or answers it: a frozen server, a proxy without its
    backend)."""
    if peer == "closed":
        yield free_port()  # bound and released: nothing listens there
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("peer", ["closed", "silent"])
@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_run_with_the_broker_unreachable_fails_in_bounded_time_and_ends_its_record(
    tmp_path: Path, orch_env: dict[str, str], scheme: str, peer: str
) -> None:
    """No broker answers (Redis for state does): `run` says so on one line of stderr, exits 1 within
    seconds, and the record it wrote ends failed with a reason; the lock is never taken."""
    cfg, _bare, env = workspace(tmp_path, orch_env, "nobroker", budget={"cycle_s": 120, "idle_timeout_s": 60})
    with broker_port(peer) as port:
        url = f"redis://127.0.0.1:{port}/0" if scheme == "redis" else f"amqp://u:p@127.0.0.1:{port}//"
        env["ORCH_BROKER_URL"] = url
        t0 = time.monotonic()
        proc = orchestrate(["run", str(cfg)], env, timeout=45)
        took = time.monotonic() - t0
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert took < 20, f"`run` took {took:.1f} s to give up on the broker"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("orchestrate: cannot reach the Celery broker") and f":{port}" in lines[0], lines
    assert ":p@" not in proc.stderr  # the password stays hidden
    found = records(env, "nobroker")
    assert len(found) <= 1
    for record in found:  # none left queued: it ended, saying why
        assert record.status is Status.FAILED and record.finished_at, record
        assert record.ctx.reason is not None and "broker" in (record.ctx.error or ""), record.ctx
    client, keys, _ = state_of(env)
    assert client.get(keys.lock("nobroker")) is None


# -- a worker stopped with SIGTERM mid-agent ----------------------------------------------------------


def host_worker(env: dict[str, str], log: Path, node: str):  # type: ignore[no-untyped-def]
    args = ["worker", "--agents", "claude-code", "-c", "1", "--without-gossip", "--without-mingle", "-n", node]
    return orchestrate_process(args, env, log, ready=b" ready.")


def received(task: str, log: str) -> list[str]:
    """The ids of the deliveries of `task` a worker's log shows."""
    return re.findall(rf"Task {re.escape(task)}\[([0-9a-f-]+)\] received", log)


@pytest.mark.timeout(120)
def test_sigterm_mid_agent_lets_the_step_finish_and_the_new_worker_carries_the_cycle_on(
    tmp_path: Path, orch_env: dict[str, str]
) -> None:
    """An upgrade: the worker gets SIGTERM while the agent works. Its warm shutdown lets the agent's step run
    to its end (the agent is not cut short), then it exits 0; the next step waits in `host.<name>` until the
    new worker of that host starts and finishes the cycle. The agent ran exactly once, the branch is pushed,
    the lock released."""
    claude = {"command": str(FAKE_CLAUDE), "env": {"FAKE_CLAUDE_MODE": "steady", "FAKE_CLAUDE_SECONDS": "6"}}
    cfg, bare, env = workspace(
        tmp_path,
        orch_env,
        "upgrade",
        budget={"cycle_s": 90, "idle_timeout_s": 30},
        decision={"backend": "heuristic"},
        agents={"allow": ["claude-code"], "claude-code": claude},
    )
    _client, keys, state = state_of(env)
    old_log, new_log = tmp_path / "old.log", tmp_path / "new.log"
    run = None
    try:
        with host_worker(env, old_log, "old@upgrade-host") as old:
            run = cli_process(["run", str(cfg), "--json"], env, tmp_path / "run.out")
            ids = wait_for(lambda: _client.zrange(keys.cycles("upgrade"), 0, 0), timeout=30)
            assert ids, (tmp_path / "run.out").read_text()
            cycle_id = ids[0].decode()
            working = lambda: sum(e["kind"] == "agent.message" for e in events(env, cycle_id)) >= 3  # noqa: E731
            assert wait_for(working, timeout=40), old_log.read_text()[-3000:]
            old.send_signal(signal.SIGTERM)
            assert old.wait(60) == 0, old_log.read_text()[-3000:]
        record = state.get_cycle(cycle_id)
        assert record is not None and record.live, record
        execute = record.ctx.steps[2]
        assert (execute.op, execute.status.value) == ("agent.execute", "succeeded"), record.ctx.steps
        assert record.ctx.waiting_on == "host.upgrade-host", record.ctx
        with host_worker(env, new_log, "new@upgrade-host"):
            assert run.wait(60) == 0, (tmp_path / "run.out").read_text()[-3000:] + new_log.read_text()[-3000:]
    finally:
        if run is not None and run.poll() is None:
            run.kill()
            run.wait()
    report = report_of((tmp_path / "run.out").read_text())
    assert report["status"] == "succeeded", report
    kinds = [e["kind"] for e in events(env, cycle_id)]
    assert kinds.count("agent.started") == 1 and kinds.count("agent.finished") == 1, kinds
    steps = [
        e["data"]["text"]  # type: ignore[index]
        for e in events(env, cycle_id)
        if e["kind"] == "agent.message" and "step " in str(e["data"])
    ]
    assert steps == [f"step {n}" for n in range(1, len(steps) + 1)] and len(steps) >= 10, steps
    old_text, new_text = old_log.read_text(), new_log.read_text()
    both = old_text + new_text
    assert len(received("orchestrate.op.agent.execute", both)) == 1, both[-3000:]
    assert received("orchestrate.op.agent.execute", old_text)
    assert received("orchestrate.op.pr.create", new_text) and received("orchestrate.finish", new_text)
    assert not received("orchestrate.op.pr.create", old_text)
    assert "WorkerLostError" not in both and "Unrecoverable error" not in both
    assert _client.get(keys.lock("upgrade")) is None
    branch = str(report["branch"])
    assert branch in sh(["git", "--git-dir", str(bare), "branch"], tmp_path)
    files = sh(["git", "--git-dir", str(bare), "ls-tree", "--name-only", branch], tmp_path).split()
    assert "orchestrated.txt" in files


# -- gh and git push that never answer ---------------------------------------------------------------


def hanging_gh(bin_dir: Path, marker: str) -> None:
    """A `gh` that answers nothing, ever: one process (as the real, single-binary gh is)."""
    gh = bin_dir / "gh"
    gh.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import time; time.sleep(3600)' {marker} \"$@\"\n")
    gh.chmod(0o755)


def hanging_ssh(bin_dir: Path, marker: str) -> Path:
    """An ssh for GIT_SSH_COMMAND that serves fetches from the local path but whose `git-receive-pack`
    never answers: a push that hangs on the network, after the fetch before it worked."""
    ssh = bin_dir / "fake-ssh"
    ssh.write_text(
        "#!/bin/sh\n"
        'case "$2" in\n'
        f"  git-receive-pack*) exec {sys.executable} -c 'import time; time.sleep(3600)' {marker} ;;\n"
        '  *) exec sh -c "$2" ;;\n'
        "esac\n"
    )
    ssh.chmod(0o755)
    return ssh


BUDGET_S = 8
AFTER_END_S = 3  # the least time finish's own push gets once the cycle ended (ORCH_AFTER_END_S; 15 s by default)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("hang", ["gh", "push"])
def test_a_publish_that_hangs_ends_within_the_budget_and_leaves_no_process(
    tmp_path: Path, orch_env: dict[str, str], hang: str
) -> None:
    """`gh` (every call) or the push's transport never answers: publish gives up within what is left of the
    budget, the cycle ends within budget + grace with the PR step failed and saying why, the worker lives
    on, the lock is released, and no process of the hanging tool is left behind."""
    marker = f"hang-{hang}-{free_port()}"
    cfg, bare, env = workspace(
        tmp_path,
        orch_env,
        "hangs",
        budget={"cycle_s": BUDGET_S, "idle_timeout_s": 10},
        decision={"backend": "heuristic"},
    )
    env["ORCH_AFTER_END_S"] = str(AFTER_END_S)
    repo = tmp_path / "demo"
    if hang == "gh":
        hanging_gh(tmp_path / "bin", marker)
    else:
        ssh = hanging_ssh(tmp_path / "bin", marker)
        env.update(GIT_SSH_COMMAND=str(ssh), GIT_SSH_VARIANT="simple")
        sh(["git", "remote", "set-url", "origin", f"ssh://git.invalid{bare}"], repo)
    _client, keys, _ = state_of(env)
    log = tmp_path / "worker.log"
    try:
        with celery_worker(env, log) as worker:
            t0 = time.monotonic()
            proc = orchestrate(["run", str(cfg), "--json"], env, timeout=100)
            took = time.monotonic() - t0
            # Checked while the worker runs: stopping it kills its process group, and a leftover with it.
            gone = wait_for(lambda: not live_with_marker(marker), timeout=3)
            assert worker.poll() is None, log.read_text()[-3000:]
            again = orchestrate(["run", str(cfg), "--json", "--dry-run"], env, timeout=60)  # it still takes work
            assert again.returncode == 0 and '"status": "succeeded"' in again.stdout, again.stdout + again.stderr
    finally:
        for pid in live_with_marker(marker):  # ours: the marker is this test's own
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0, proc.stdout + proc.stderr + log.read_text()[-3000:]
    report = report_of(proc.stdout)
    assert took < BUDGET_S + GRACE_S, f"the cycle took {took:.1f} s: past budget and grace\n{log.read_text()[-3000:]}"
    pr_step = next(s for s in cast(list[dict[str, object]], report["steps"]) if s["op"] == "pr.create")
    assert float(cast(float, pr_step["duration_s"])) < BUDGET_S, pr_step  # gave up within the budget
    # A PR step that could not publish marks itself failed and says why; the cycle itself succeeded (the
    # agent did its work, which stays in the worktree when the push never got through).
    assert report["status"] == "succeeded", report
    pr = report["pr"]
    assert isinstance(pr, dict) and pr["status"] == "failed", report
    if hang == "gh":
        assert pr["reason"] == "gh_timeout: auth status", pr
        assert str(report["branch"]) in sh(["git", "--git-dir", str(bare), "branch"], tmp_path)  # pushed before gh
    else:
        assert str(pr["reason"]).startswith("push_failed"), pr
        assert "timed out" in str(pr["reason"]), pr
        assert str(report["branch"]) not in sh(["git", "--git-dir", str(bare), "branch"], tmp_path)
        kept = Path(env["ORCH_STATE_DIR"]) / "worktrees" / str(report["cycle_id"])
        assert (kept / "orchestrated.txt").is_file()  # the unpushed work stays in its worktree, for gc
        # pr.create's push, then finish's own once the cycle had ended: bounded by ORCH_AFTER_END_S.
        pushes = re.findall(r"publish of \S+ failed: push_failed: timed out after (\d+)s", log.read_text())
        assert len(pushes) == 2 and int(pushes[-1]) <= AFTER_END_S, pushes
    assert pr_step["status"] == "failed" and pr_step["reason"] == pr["reason"], pr_step
    assert _client.get(keys.lock("hangs")) is None
    assert gone, f"processes of the hanging {hang} left behind: {live_with_marker(marker)}"
    assert "Unrecoverable error" not in log.read_text()
