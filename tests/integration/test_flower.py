"""Real Flower, with basic auth on, against the test broker: every step of a cycle is readable through its
authenticated API, by name and arguments, with no secret in them; without credentials it refuses."""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.fake_gh import install_fake_gh
from tests.helpers import ROOT, celery_worker, free_port, make_repo, orchestrate, wait_for

FAKE_CLAUDE = ROOT / "tests" / "fixtures" / "fake_claude.py"
pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
AUTH = "admin:flower-test-pw"
SECRET = "ghp_flowertestsecret0123456789abcdefABCD"


@contextlib.contextmanager
def flower(env: dict[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    with log.open("wb") as fh:
        proc = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tasks",
                "flower",
                f"--port={port}",
                "--address=127.0.0.1",
                f"--basic-auth={AUTH}",
            ],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: status(f"{base}/healthcheck", None) in (200, 401), timeout=30), log.read_text()[-2000:]
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def status(url: str, auth: str | None) -> int:
    try:
        return get(url, auth)[0]
    except OSError:
        return 0


def get(url: str, auth: str | None) -> tuple[int, Any]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, None
    try:
        return resp.status, json.loads(body or b"null")
    except ValueError:  # /healthcheck answers text
        return resp.status, body.decode(errors="replace")


def test_flower_shows_every_step_by_name_behind_auth(tmp_path: Path, orch_env: dict[str, str]) -> None:
    repo, _bare = make_repo(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    install_fake_gh(bin_dir, tmp_path / "gh")
    env = dict(orch_env, PATH=f"{bin_dir}:{orch_env['PATH']}", GH_TOKEN=SECRET)
    cfg = tmp_path / "seen.json"
    cfg.write_text(
        json.dumps(
            {
                "id": "seen",
                "workspace": {"repo": str(repo)},
                "budget": {"cycle_s": 120, "idle_timeout_s": 60},
                "sessions": {"claude_dir": str(tmp_path / "none"), "codex_dir": str(tmp_path / "none")},
                "goals": ["Write orchestrated.txt"],
                "agents": {"allow": ["claude-code"], "claude-code": {"command": str(FAKE_CLAUDE)}},
            }
        )
    )
    with flower(env, tmp_path / "flower.log") as base, celery_worker(env, tmp_path / "worker.log"):
        time.sleep(2)  # Flower's event receiver is listening before the cycle starts
        proc = orchestrate(["run", str(cfg), "--json"], env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        cycle_id = json.loads(proc.stdout)["cycle_id"]
        names = [
            "orchestrate.start",
            "orchestrate.op.session.analyze",
            "orchestrate.op.orchestrate.decide",
            "orchestrate.op.agent.execute",
            "orchestrate.op.pr.create",
            "orchestrate.finish",
        ]

        def seen() -> dict[str, Any]:
            code, tasks = get(f"{base}/api/tasks", AUTH)
            return {t["name"]: t for t in (tasks or {}).values() if code == 200 and cycle_id in str(t.get("args"))}

        assert wait_for(lambda: set(names) <= set(seen()), timeout=30), sorted(seen())
        tasks = seen()
        for name in names:
            assert tasks[name]["state"] == "SUCCESS", tasks[name]
        assert "'step': 2" in str(tasks["orchestrate.op.agent.execute"]["kwargs"])  # analyze 0, decide 1
        assert SECRET not in json.dumps(tasks)
        # Without credentials, or with wrong ones, Flower refuses.
        assert get(f"{base}/api/tasks", None)[0] == 401
        assert get(f"{base}/api/tasks", "admin:wrong")[0] == 401
