"""Disk faults on purpose, with real processes: parts of the worker's state directory (ORCH_STATE_DIR) that
refuse writes while a cycle runs.

The tests run as root, which no file mode stops, so the failing writes are real ones: a tmpfs mounted over
the directory and remounted read-only (EROFS), or a tiny tmpfs filled to the last byte (ENOSPC). Every
mount is undone at the end whatever happened. Without mount rights (not root, or a container that forbids
it) the tests skip, saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import redis

from orchestration.keys import Keys
from tests.helpers import ROOT, celery_worker, isolated_env, live_with_marker, orchestrate, sh, wait_for
from tests.integration.test_fleet import workspace
from tests.unit.test_sessions import Claude

FAKE_CLAUDE = ROOT / "tests" / "fixtures" / "fake_claude.py"
pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

# -- failing writes ------------------------------------------------------------------------------------


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)  # noqa: S603


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "32m") -> Iterator[Path]:
    """A tmpfs of `size` mounted over `path` (made if missing) for the block; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root: no honest way to make a directory refuse writes otherwise")
    path.mkdir(parents=True, exist_ok=True)
    proc = _mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path))
    if proc.returncode != 0:
        pytest.skip(f"this container does not allow mounting a tmpfs: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:  # noqa: S603
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)  # noqa: S603


@contextlib.contextmanager
def read_only(mount: Path) -> Iterator[None]:
    """The tmpfs at `mount` read-only for the block: every write under it fails with EROFS, root's too."""
    proc = _mount("-o", "remount,ro", str(mount))
    assert proc.returncode == 0, proc.stderr
    try:
        yield
    finally:
        _mount("-o", "remount,rw", str(mount))


def fill(mount: Path) -> Path:
    """Fills the tmpfs at `mount` to its last byte (then every write that needs a block fails with ENOSPC);
    returns the filler, whose removal gives the space back."""
    filler = mount / "filler"
    with filler.open("wb", buffering=0) as fh:
        for chunk in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * chunk)
    return filler


# -- one worker for the cases that keep theirs running ---------------------------------------------------


@dataclass
class Worker:
    """A worker shared by the cases of this module that run all their cycles on one worker (each case its
    own workspace, repository and agent; the mounts are made over parts of this worker's ORCH_STATE_DIR)."""

    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes]
    start: int = 0  # where the current case's part of the log begins

    def case_log(self) -> str:
        """What the worker logged since the current case began."""
        return self.log.read_bytes()[self.start :].decode(errors="replace")


@pytest.fixture(scope="module")
def shared_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """Its own redis-server, state directory and recording `gh` (`isolated_env`)."""
    tmp = tmp_path_factory.mktemp("disk-worker")
    log = tmp / "worker.log"
    with isolated_env(tmp, ORCH_STATE_DIR=str(tmp / "state")) as env, celery_worker(env, log) as proc:
        yield Worker(env, log, proc)


@pytest.fixture
def worker(shared_worker: Worker) -> Iterator[Worker]:
    """The shared worker, alive, its log read from here on."""
    assert shared_worker.proc.poll() is None, shared_worker.log.read_text()[-3000:]
    shared_worker.start = shared_worker.log.stat().st_size
    yield shared_worker
    assert "the error path itself failed" not in shared_worker.case_log()


# -- reading what happened -----------------------------------------------------------------------------


def config(
    tmp: Path, orch_env: dict[str, str], name: str, agent_env: dict[str, str] | None = None, **fields: Any
) -> tuple[Path, Path, dict[str, str]]:
    """A workspace (see test_fleet) whose agent is this test's own copy of the stand-in agent: its path tells
    this test's agent processes from those of any other test running on the machine."""
    agent = agent_of(tmp)
    agent.parent.mkdir()
    shutil.copy(FAKE_CLAUDE, agent)
    claude = {"command": str(agent), "env": agent_env or {}}
    agents = {"allow": ["claude-code"], "claude-code": claude}
    return workspace(tmp, orch_env, name, decision={"backend": "heuristic"}, agents=agents, **fields)


def agent_of(tmp: Path) -> Path:
    return tmp / "agent" / "fake_claude.py"


def agents_left(tmp: Path) -> list[int]:
    """This test's agent processes still alive."""
    return live_with_marker(str(agent_of(tmp)))


def send(cfg: Path, env: dict[str, str]) -> str:
    proc = orchestrate(["run", str(cfg), "--json", "--no-follow"], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(json.loads(proc.stdout)["cycle_id"])


def ended(env: dict[str, str], cycle_id: str, log: Path, timeout: float = 20) -> dict[str, Any]:
    """The cycle's record once closed: its status, reason, error (the context's) and report."""
    r = redis.Redis.from_url(env["ORCH_REDIS_URL"])
    key = Keys(env["ORCH_KEY_PREFIX"]).cycle(cycle_id)
    closed = wait_for(lambda: r.hget(key, "finished_at") is not None, timeout=timeout)
    assert closed, f"cycle {cycle_id} not closed: {r.hgetall(key)}\n{log.read_text()[-4000:]}"
    raw = cast(dict[bytes, bytes], r.hgetall(key))
    ctx = orjson.loads(raw.get(b"ctx") or b"{}")
    return {
        "status": raw[b"status"].decode(),
        "reason": raw.get(b"reason", b"").decode(),
        "error": ctx.get("error") or "",
        "outputs": ctx.get("outputs") or {},
        "report": orjson.loads(raw[b"report"]),
    }


def failed_clearly(end: dict[str, Any], *named: str) -> None:
    """The cycle ended failed with a reason, and its error (no traceback) names each of `named`."""
    assert (end["status"], end["reason"]) == ("failed", "stage_error"), end
    assert "Traceback" not in end["error"] and all(n in end["error"] for n in named), end["error"]


def stream_of(r: redis.Redis, key: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    return cast(list[tuple[bytes, dict[bytes, bytes]]], r.xrange(key))


def lock_free(env: dict[str, str], workspace_id: str) -> bool:
    r = redis.Redis.from_url(env["ORCH_REDIS_URL"])
    return r.get(Keys(env["ORCH_KEY_PREFIX"]).lock(workspace_id)) is None


def branches(bare: Path) -> str:
    return sh(["git", "--git-dir", str(bare), "branch"], bare.parent)


def session_history(tmp: Path, repo: Path, prompt: str) -> Path:
    """One Claude Code session in `repo`, asking `prompt`: something for session.analyze to read (and cache)."""
    c = Claude(str(repo))
    path = tmp / "claude" / "projects" / "p" / f"{c.session}.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(orjson.dumps(c.prompt(prompt, 1)) + b"\n")
    return tmp / "claude"


# -- 1. the analyzer's cache -----------------------------------------------------------------------------


def test_a_read_only_session_cache_costs_only_the_cache(tmp_path: Path, worker: Worker) -> None:
    """ORCH_STATE_DIR/cache refuses writes (a read-only mount) while session.analyze reads a session of the
    repository: the analysis is done without its cache (a warning in the worker's log), the cycle goes on and
    succeeds, its branch pushed. Writable again, the next cycle on the same worker writes the cache."""
    cfg, bare, env = config(tmp_path, worker.env, "rocache")
    data = json.loads(cfg.read_text())
    claude_dir = session_history(tmp_path, Path(data["workspace"]["repo"]), "Add a docstring to app.py")
    data["sessions"] = {"claude_dir": str(claude_dir), "codex_dir": str(tmp_path / "none"), "since_days": 3650}
    cfg.write_text(json.dumps(data))
    log = worker.log
    cache = Path(env["ORCH_STATE_DIR"]) / "cache"
    with tmpfs(cache, "4m"):
        with read_only(cache):
            first = ended(env, send(cfg, env), log)
            assert list(cache.iterdir()) == []
        assert first["status"] == "succeeded", first
        assert first["outputs"]["0"]["sessions"] == 1, first["outputs"]["0"]  # the session was read all the same
        warnings = [line for line in worker.case_log().splitlines() if "cannot write session" in line]
        assert warnings and all("Read-only file system" in line for line in warnings), warnings
        assert first["report"]["branch"] in branches(bare) and first["report"]["pr"]["status"] == "created"
        assert lock_free(env, "rocache") and worker.proc.poll() is None

        second = ended(env, send(cfg, env), log)
        assert second["status"] == "succeeded", second
        assert {p.name.split("-")[0] for p in cache.iterdir()} == {"sessions", "insights"}, list(cache.iterdir())
        assert worker.proc.poll() is None
    assert lock_free(env, "rocache") and agents_left(tmp_path) == []


def test_a_read_only_state_dir_carries_analyze_and_ends_the_cycle_at_its_worktree(
    tmp_path: Path, worker: Worker
) -> None:
    """The whole ORCH_STATE_DIR read-only: analyze and decide go on without it; the cycle ends failed where it
    needs the disk (the workspace's private clone), its error naming the read-only file system and the
    directory, lock released, no agent started. Writable again, the next cycle on that worker succeeds."""
    cfg, bare, env = config(tmp_path, worker.env, "rostate")
    log = worker.log
    state = Path(env["ORCH_STATE_DIR"])
    with tmpfs(state):
        with read_only(state):
            first = ended(env, send(cfg, env), log)
        failed_clearly(first, "Read-only file system", str(state / "mirrors"))
        assert [s["status"] for s in first["report"]["steps"]] == ["succeeded", "succeeded", "failed", "skipped"]
        assert first["report"]["agent"] is None and first["report"]["branch"] is None
        assert lock_free(env, "rostate") and worker.proc.poll() is None

        second = ended(env, send(cfg, env), log)
        assert second["status"] == "succeeded", second
        assert second["report"]["branch"] in branches(bare)
    assert lock_free(env, "rostate") and agents_left(tmp_path) == []


# -- 2. a full state directory ---------------------------------------------------------------------------


def test_a_full_state_dir_ends_the_cycle_at_its_clone_or_worktree_with_the_reason(
    tmp_path: Path, worker: Worker
) -> None:
    """ORCH_STATE_DIR on a small tmpfs filled up: first before the workspace's private clone exists (the clone
    fails), then once it exists (the cycle's worktree fails). Each cycle ends failed with an error naming the
    full disk, lock released, no agent started; with room again, the next cycle on that worker succeeds."""
    cfg, bare, env = config(tmp_path, worker.env, "fullwt")
    log = worker.log
    state = Path(env["ORCH_STATE_DIR"])
    with tmpfs(state, "8m"):
        for where in ("cannot clone or fetch", "cannot create worktree"):
            filler = fill(state)
            failed = ended(env, send(cfg, env), log)
            failed_clearly(failed, where)
            assert "no space left on" in failed["error"].lower(), failed["error"]
            assert failed["report"]["agent"] is None and agents_left(tmp_path) == []
            assert lock_free(env, "fullwt") and worker.proc.poll() is None
            filler.unlink()
            after = ended(env, send(cfg, env), log)
            assert after["status"] == "succeeded", after
            assert after["report"]["branch"] in branches(bare)
    assert lock_free(env, "fullwt") and agents_left(tmp_path) == []


def test_a_state_dir_filled_while_the_agent_works_keeps_the_work_and_closes_the_cycle(
    tmp_path: Path, orch_env: dict[str, str]
) -> None:
    """The state directory fills up while the agent works in its worktree there: its work cannot be committed
    nor its guard record written. The cycle still closes (failed, the error naming the full disk and the
    file), the lock is released and the agent is gone; the work stays in the worktree, which `gc` keeps
    (uncommitted changes). With room again the same worker runs the next cycle, and a worker started
    afterwards saves the kept work to the remote as a WIP commit."""
    steady = {"FAKE_CLAUDE_MODE": "steady", "FAKE_CLAUDE_SECONDS": "2"}
    cfg, bare, env = config(tmp_path, orch_env, "fullpub", agent_env=steady)
    log = tmp_path / "worker.log"
    state = Path(env["ORCH_STATE_DIR"])
    r = redis.Redis.from_url(env["ORCH_REDIS_URL"])
    keys = Keys(env["ORCH_KEY_PREFIX"])
    with tmpfs(state, "16m"):
        with celery_worker(env, log) as worker:
            cycle_id = send(cfg, env)
            stream = keys.events(cycle_id)
            working = lambda: any(b"step 1" in f[b"event"] for _, f in stream_of(r, stream))  # noqa: E731
            assert wait_for(working, timeout=20), log.read_text()[-3000:]
            filler = fill(state)
            first = ended(env, cycle_id, log)
            failed_clearly(first, "No space left on device", str(state))
            assert lock_free(env, "fullpub") and agents_left(tmp_path) == []
            kept = state / "worktrees" / cycle_id
            assert (kept / "orchestrated.txt").read_text() == "written by the fake agent\n"
            branch = first["report"]["branch"]
            assert branch and branch not in branches(bare)

            filler.unlink()
            listed = orchestrate(["gc", "--dry-run"], dict(env, COLUMNS="250")).stdout
            assert f"{cycle_id}   failed   kept     uncommitted changes" in listed, listed
            assert worker.poll() is None
            second = ended(env, send(cfg, env), log)
            assert second["status"] == "succeeded", second
            assert second["report"]["branch"] in branches(bare)
        assert "the error path itself failed" not in log.read_text()
        with celery_worker(env, tmp_path / "restarted.log"):
            pushed = lambda: branch in branches(bare)  # noqa: E731
            assert wait_for(pushed, timeout=15), (tmp_path / "restarted.log").read_text()[-3000:]
    message = sh(["git", "--git-dir", str(bare), "log", "-1", "--format=%s", branch], tmp_path)
    assert message.startswith("WIP:"), message
    files = sh(["git", "--git-dir", str(bare), "ls-tree", "--name-only", branch], tmp_path).split()
    assert "orchestrated.txt" in files
    assert lock_free(env, "fullpub") and agents_left(tmp_path) == []


# -- 3. the agent's log directory ------------------------------------------------------------------------


def test_a_read_only_log_dir_ends_the_cycle_before_the_agent_with_the_reason(tmp_path: Path, worker: Worker) -> None:
    """ORCH_STATE_DIR/logs read-only when agent.execute makes the cycle's log directory: the agent is not
    started; the cycle ends failed with an error naming the read-only file system and the directory, lock
    released. Writable again, the next cycle on that worker succeeds and its agent's log is there."""
    cfg, _bare, env = config(tmp_path, worker.env, "rologs")
    log = worker.log
    logs = Path(env["ORCH_STATE_DIR"]) / "logs"
    with tmpfs(logs, "4m"):
        with read_only(logs):
            cycle_id = send(cfg, env)
            first = ended(env, cycle_id, log)
        failed_clearly(first, "Read-only file system", str(logs / cycle_id))
        assert lock_free(env, "rologs") and worker.proc.poll() is None and agents_left(tmp_path) == []

        second_id = send(cfg, env)
        second = ended(env, second_id, log)
        assert second["status"] == "succeeded", second
        assert (logs / second_id / "claude-code.stderr.log").exists()
    assert lock_free(env, "rologs") and agents_left(tmp_path) == []
