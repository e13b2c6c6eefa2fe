"""Pipelines end to end: a manifest file of steps runs through one real prefork worker on a real Redis, the
real `claude` CLI (npm) against the scripted model API, a real `shell.run` program, `pr.create` through the
recording stand-in for `gh`, and `http.notify` to a loopback webhook server; and the same manifest under
`orchestrate run --local`.

One Redis (the session's) and one worker serve the whole module; each test has its own workspace id,
repository, scripted model server and webhook server.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from orchestration.keys import Keys
from tests.fixtures.anthropic_server import ScriptedAnthropic, claude_env, write_file_script
from tests.fixtures.fake_gh import install_fake_gh, read_calls
from tests.fixtures.webhook_server import WebhookServer
from tests.helpers import NODE_BIN, ROOT, celery_worker, live_with_marker, make_repo, orchestrate, sh

pytestmark = pytest.mark.e2e

CLAUDE = NODE_BIN / "claude"
# The venv's python3: `shell.run` matches permissions.shell on argv[0]'s base name ("python3").
PY3 = "python3"  # a bare name found on PATH, as a permissions.shell list requires
CONTENT = "hello from the pipeline\n"
# What the worker holds that no command may see.
GH_TOKEN = "ghp_" + "Q7w8E9r0" * 5
HOOK_TOKEN = "hooktok-" + uuid.uuid4().hex  # sent as a header value only: never logged anywhere


@dataclass
class Rig:
    """The module's worker and everything it shares with the tests."""

    env: dict[str, str]  # the worker's environment, also the CLI's
    base: Path
    gh: Path  # the fake gh's state dir (calls.jsonl)
    log: Path
    redis: redis.Redis
    prefix: str

    def events(self, cycle_id: str) -> list[dict[str, Any]]:
        rows: list[tuple[bytes, dict[bytes, bytes]]] = self.redis.xrange(Keys(self.prefix).events(cycle_id))  # type: ignore[assignment]
        return [json.loads(fields[b"event"]) for _, fields in rows]

    def pr_creates(self, branch: str | None) -> list[dict[str, Any]]:
        return [
            c
            for c in read_calls(self.gh)
            if c["argv"][:2] == ["pr", "create"] and branch is not None and f"--head={branch}" in c["argv"]
        ]


@pytest.fixture(scope="module")
def rig(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    if not CLAUDE.exists():
        pytest.fail(f"{CLAUDE} is missing: run `npm ci` (or `make install`)", pytrace=False)
    base = tmp_path_factory.mktemp("pipeline-worker")
    short = Path(tempfile.mkdtemp(prefix="pw-"))  # claude puts a unix socket under $TMPDIR: keep it short
    bin_dir = base / "bin"
    install_fake_gh(bin_dir, base / "gh")
    prefix = f"t{uuid.uuid4().hex[:8]}"
    env = dict(os.environ)
    # claude's offline environment; each config points ANTHROPIC_BASE_URL at its own scripted server.
    env.update(claude_env("http://127.0.0.1:9", base / "home", tmpdir=short))
    env.update(
        ORCH_REDIS_URL=redis_url,
        ORCH_KEY_PREFIX=prefix,
        ORCH_STATE_DIR=str(base / "state"),
        ORCH_CONFIG_DIR=str(base / "configs"),
        ORCH_ALLOW="shell,network:127.0.0.1",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        PATH=f"{bin_dir}:{NODE_BIN}:{os.environ['PATH']}",
        GH_TOKEN=GH_TOKEN,
        GITHUB_TOKEN=GH_TOKEN.replace("ghp_", "gho_"),
        HOOK_TOKEN=HOOK_TOKEN,
    )
    log = base / "worker.log"
    try:
        with celery_worker(env, log):
            yield Rig(env, base, base / "gh", log, redis.Redis.from_url(redis_url), prefix)
    finally:
        shutil.rmtree(short, ignore_errors=True)


def write_config(
    tmp: Path, wid: str, repo: Path, model_url: str, steps: list[dict[str, Any]], network: list[str] | None = None
) -> Path:
    """A workspace config whose `pipeline` names a manifest file next to it (a relative path)."""
    (tmp / "manifest.json").write_text(json.dumps({"id": f"{wid}-manifest", "version": "1.2.0", "pipeline": steps}))
    cfg = {
        "id": wid,
        "workspace": {"repo": str(repo)},
        "budget": {"cycle_s": 120, "max_cost_usd": 5},
        "sessions": {"claude_dir": str(tmp / "no-claude"), "codex_dir": str(tmp / "no-codex")},
        "goals": ["Add a hello.txt greeting file"],
        "decision": {"backend": "heuristic"},
        "agents": {
            "allow": ["claude-code"],
            "claude-code": {"command": str(CLAUDE), "env": {"ANTHROPIC_BASE_URL": model_url}},
        },
        "permissions": {"shell": ["python3"], "network": network or []},
        "env_allow": ["HOOK_TOKEN"],
        "pipeline": "manifest.json",
    }
    path = tmp / f"{wid}.json"
    path.write_text(json.dumps(cfg))
    return path


def head_steps() -> list[dict[str, Any]]:
    return [
        {"op": "session.analyze", "as": "insights"},
        {"op": "orchestrate.decide", "as": "decision"},
        {"op": "agent.execute", "as": "run"},
    ]


def check_step(code: str, *args: str, check: bool = False) -> dict[str, Any]:
    return {
        "op": "shell.run",
        "as": "tests",
        "with": {"command": [PY3, "-c", code, *args], "check": check, "timeout_s": 60},
    }


# The "tests": hello.txt as the agent wrote it; the command's whole environment goes to argv[1].
CHECK_HELLO = (
    "import json, os, pathlib, sys\n"
    "pathlib.Path(sys.argv[1]).write_text(json.dumps(dict(os.environ)))\n"
    "ok = pathlib.Path('hello.txt').read_text() == sys.argv[2]\n"
    "print('tests passed' if ok else 'tests failed')\n"
    "sys.exit(0 if ok else 1)\n"
)

TOUCH = "import pathlib, sys; pathlib.Path(sys.argv[1]).touch()"


def notify_step(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "op": "http.notify",
        "as": "hook",
        "with": {
            "url": url,
            "json": {
                "cycle": "${cycle.id}",
                "tests_ok": "${tests.ok}",
                "cost": "${run.cost_usd}",
                "files": "${run.files_changed}",
                "text": "ok=${tests.ok}",
            },
            "headers": {"Authorization": "Bearer ${env.HOOK_TOKEN}"},
            "timeout_s": 5,
            "retries": 0,
        },
        **extra,
    }


def happy_manifest(tmp: Path, hook: WebhookServer) -> list[dict[str, Any]]:
    return [
        *head_steps(),
        check_step(CHECK_HELLO, str(tmp / "command-env.json"), CONTENT),
        {"op": "pr.create", "as": "pr", "if": "${tests.ok}", "with": {"title": "Add hello.txt (pipeline)"}},
        notify_step(hook.url("/hook")),
    ]


def run_through_worker(rig: Rig, cfg: Path) -> tuple[dict[str, Any], str]:
    proc = orchestrate(["run", str(cfg), "--json"], rig.env, timeout=150)
    log = rig.log.read_text(errors="replace")
    assert proc.stdout.strip(), proc.stderr + log[-4000:]
    return json.loads(proc.stdout), proc.stdout + proc.stderr


def assert_typed_payload(hook: WebhookServer, report: dict[str, Any]) -> None:
    """The webhook got one POST whose whole-reference values kept their types."""
    assert len(hook.requests) == 1, hook.requests
    req = hook.requests[0]
    assert req.method == "POST" and req.path == "/hook"
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["Authorization"] == f"Bearer {HOOK_TOKEN}"  # the server did receive the header
    body = req.body
    assert body["cycle"] == report["cycle_id"]
    assert body["tests_ok"] is True  # a JSON true, not "True" or "true"
    assert isinstance(body["cost"], float) and not isinstance(body["cost"], bool) and body["cost"] > 0
    assert body["cost"] == pytest.approx(report["agent"]["cost_usd"])
    assert body["files"] == ["hello.txt"]  # a JSON list
    assert body["text"] == "ok=true"  # inside text: rendered as JSON


def assert_token_never_logged(*texts: str) -> None:
    for text in texts:
        assert HOOK_TOKEN not in text


@pytest.mark.timeout(150)
def test_manifest_pipeline_through_worker(rig: Rig, tmp_path: Path) -> None:
    repo, bare = make_repo(tmp_path)
    with (
        WebhookServer() as hook,
        ScriptedAnthropic(script=write_file_script("hello.txt", CONTENT)) as model,
    ):
        cfg = write_config(
            tmp_path, "pipe-ok", repo, model.base_url, happy_manifest(tmp_path, hook), network=[hook.netloc]
        )
        report, output = run_through_worker(rig, cfg)
        assert model.main_requests, "claude never reached the scripted model API"
    log = rig.log.read_text(errors="replace")
    assert report["status"] == "succeeded", json.dumps(report, indent=1) + log[-4000:]

    # Every step ran and succeeded, in order, under its name.
    assert [(s["op"], s["as"], s["status"]) for s in report["steps"]] == [
        ("session.analyze", "insights", "succeeded"),
        ("orchestrate.decide", "decision", "succeeded"),
        ("agent.execute", "run", "succeeded"),
        ("shell.run", "tests", "succeeded"),
        ("pr.create", "pr", "succeeded"),
        ("http.notify", "hook", "succeeded"),
    ]
    assert all(s["duration_s"] is not None and s["reason"] is None for s in report["steps"][2:])
    assert_typed_payload(hook, report)

    # The PR was opened, through `gh pr create`, with the title the step gave.
    assert report["pr"]["status"] == "created"
    [create] = rig.pr_creates(report["branch"])
    assert "--title=Add hello.txt (pipeline)" in create["argv"] and "--draft" in create["argv"]
    assert sh(["git", "--git-dir", str(bare), "show", f"{report['branch']}:hello.txt"], tmp_path) == CONTENT.strip()

    # Events of a step carry its index and name.
    events = rig.events(report["cycle_id"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    started = [(e["stage"], e["data"].get("step"), e["data"].get("as")) for e in events if e["kind"] == "stage.started"]
    assert started == [
        ("start", None, None),
        ("analyze", 0, "insights"),
        ("decide", 1, "decision"),
        ("execute", 2, "run"),
        ("shell", 3, "tests"),
        ("publish", 4, "pr"),
        ("notify", 5, "hook"),
        ("finish", None, None),
    ]
    by_kind = {e["kind"]: e for e in events}
    assert (by_kind["decision.made"]["data"]["step"], by_kind["decision.made"]["data"]["as"]) == (1, "decision")
    assert {"tool": "Write", "path": "hello.txt", "step": 2, "as": "run"} in [
        e["data"] for e in events if e["kind"] == "agent.tool_call"
    ]
    command = by_kind["agent.command"]
    assert command["stage"] == "shell" and command["data"]["step"] == 3 and command["data"]["as"] == "tests"
    assert command["data"]["exit_code"] == 0 and command["data"]["ok"] is True
    sent = by_kind["notify.sent"]
    assert sent["stage"] == "notify" and (sent["data"]["step"], sent["data"]["as"]) == (5, "hook")
    assert sent["data"]["status_code"] == 200 and sent["data"]["ok"] is True
    assert sent["data"]["url"] == hook.url("/hook")
    assert by_kind["pr.opened"]["data"]["step"] == 4

    # The header's value is nowhere: events, report, CLI and worker output, state files.
    state_files = [
        p.read_bytes().decode(errors="replace") for p in Path(rig.env["ORCH_STATE_DIR"]).rglob("*") if p.is_file()
    ]
    assert_token_never_logged(json.dumps(events), json.dumps(report), output, log, *state_files)

    # The command ran in the minimal environment: none of the worker's credentials or settings.
    seen = json.loads((tmp_path / "command-env.json").read_text())
    assert "PATH" in seen and "HOME" in seen
    for name in ("GH_TOKEN", "GITHUB_TOKEN", "HOOK_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        assert name not in seen, name
    assert not [k for k in seen if k.startswith(("ORCH_", "CELERY_"))]
    assert not [k for k, v in seen.items() if rig.env["ORCH_REDIS_URL"] in v or GH_TOKEN in v]
    assert live_with_marker(str(CLAUDE)) == []  # no claude left behind


@pytest.mark.timeout(150)
def test_failing_checked_command_ends_step_failed_keeps_work_and_opens_no_pr(rig: Rig, tmp_path: Path) -> None:
    repo, bare = make_repo(tmp_path)
    never = tmp_path / "never-ran"
    with (
        WebhookServer() as hook,
        ScriptedAnthropic(script=write_file_script("hello.txt", CONTENT)) as model,
    ):
        steps = [
            *head_steps(),
            check_step("import sys; print('3 tests failed', file=sys.stderr); sys.exit(3)", check=True),
            {"op": "pr.create", "as": "pr"},
            {"op": "shell.run", "as": "after", "with": {"command": [PY3, "-c", TOUCH, str(never)]}},
            {
                "op": "http.notify",
                "as": "hook",
                "with": {"url": hook.url("/hook"), "json": {"status": "${cycle.status}", "reason": "${cycle.reason}"}},
            },
        ]
        cfg = write_config(tmp_path, "pipe-fail", repo, model.base_url, steps, network=[hook.netloc])
        report, _ = run_through_worker(rig, cfg)
    assert report["status"] == "failed" and report["reason"] == "step_failed", json.dumps(report, indent=1)
    assert [(s["op"], s["status"], s["reason"]) for s in report["steps"]] == [
        ("session.analyze", "succeeded", None),
        ("orchestrate.decide", "succeeded", None),
        ("agent.execute", "succeeded", None),
        ("shell.run", "failed", "step_failed"),
        ("pr.create", "skipped", "cycle_failed"),  # runs after the end to push the work, proposes nothing
        ("shell.run", "skipped", None),  # a later step never runs
        ("http.notify", "succeeded", None),  # but the webhook hears how the cycle ended
    ]
    assert not never.exists()
    [req] = hook.requests
    assert req.body == {"status": "failed", "reason": "step_failed"}
    # The agent's work is on the branch in the remote, but no PR was proposed.
    branch = report["branch"]
    assert branch and sh(["git", "--git-dir", str(bare), "show", f"{branch}:hello.txt"], tmp_path) == CONTENT.strip()
    assert rig.pr_creates(branch) == []
    assert report["pr"]["status"] == "skipped" and report["pr"]["reason"] == "cycle_failed"
    events = rig.events(report["cycle_id"])
    [failed] = [e for e in events if e["kind"] == "stage.failed"]
    assert failed["stage"] == "shell" and failed["data"]["reason"] == "step_failed"
    assert "exit code 3" in failed["data"]["error"] and "3 tests failed" in failed["data"]["error"]
    assert (failed["data"]["step"], failed["data"]["as"]) == (3, "tests")
    assert not [e for e in events if e["data"].get("as") == "after"]


@pytest.mark.timeout(150)
def test_if_false_skips_pr_and_the_branch_is_still_pushed(rig: Rig, tmp_path: Path) -> None:
    repo, bare = make_repo(tmp_path)
    with (
        WebhookServer() as hook,
        ScriptedAnthropic(script=write_file_script("hello.txt", CONTENT)) as model,
    ):
        steps = [
            *head_steps(),
            check_step("import sys; sys.exit(1)", check=False),
            {"op": "pr.create", "as": "pr", "if": "${tests.ok}"},
            notify_step(hook.url("/hook"), **{"if": "not ${tests.ok}"}),
        ]
        cfg = write_config(tmp_path, "pipe-if", repo, model.base_url, steps, network=[hook.netloc])
        report, _ = run_through_worker(rig, cfg)
    assert report["status"] == "succeeded" and report["reason"] is None, json.dumps(report, indent=1)
    assert [(s["op"], s["status"], s["reason"]) for s in report["steps"][3:]] == [
        ("shell.run", "failed", "exit 1"),  # check false: the step failed, the cycle goes on
        ("pr.create", "skipped", "if"),
        ("http.notify", "succeeded", None),  # "not ${tests.ok}"
    ]
    branch = report["branch"]
    assert rig.pr_creates(branch) == []
    # The push at finish saved the work all the same.
    assert sh(["git", "--git-dir", str(bare), "show", f"{branch}:hello.txt"], tmp_path) == CONTENT.strip()
    events = rig.events(report["cycle_id"])
    [skipped] = [e for e in events if e["kind"] == "stage.skipped"]
    assert skipped["stage"] == "publish" and skipped["data"] == {"if": "${tests.ok}", "step": 4, "as": "pr"}
    assert not [e for e in events if e["kind"] == "pr.opened"]
    [req] = hook.requests
    assert req.body["tests_ok"] is False and req.body["text"] == "ok=false"


# A command that starts a child and both sleep; with "stubborn" the child ignores SIGTERM (only the SIGKILL
# after the grace period ends it). The marker (argv[1]) finds them both.
SPAWN_AND_SLEEP = (
    "import subprocess, sys, time\n"
    "child = ('import pathlib, signal, sys, time\\n'\n"
    "         'if sys.argv[2] == \"stubborn\": signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n'\n"
    "         'pathlib.Path(sys.argv[1] + \".child\").touch(); time.sleep(300)')\n"
    "subprocess.Popen([sys.executable, '-c', child, sys.argv[1], sys.argv[2]])\n"
    "time.sleep(300)\n"
)


def survivors(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and any(marker in a for a in proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.mark.timeout(120)
def test_command_timeout_kills_its_whole_group(rig: Rig, tmp_path: Path) -> None:
    repo, _bare = make_repo(tmp_path)
    marks = [str(tmp_path / f"mark-{uuid.uuid4().hex}") for _ in range(2)]
    steps = [
        {
            "op": "shell.run",
            "as": "soft",
            "with": {"command": [PY3, "-c", SPAWN_AND_SLEEP, marks[0], "meek"], "check": False, "timeout_s": 2},
        },
        {
            "op": "shell.run",
            "as": "hard",
            "with": {"command": [PY3, "-c", SPAWN_AND_SLEEP, marks[1], "stubborn"], "timeout_s": 2},
        },
        {"op": "shell.run", "as": "never", "with": {"command": [PY3, "-c", "print('unreachable')"]}},
    ]
    cfg = write_config(tmp_path, "pipe-timeout", repo, "http://127.0.0.1:9", steps)
    t0 = time.monotonic()
    report, _ = run_through_worker(rig, cfg)
    elapsed = time.monotonic() - t0
    assert report["status"] == "failed" and report["reason"] == "step_failed", json.dumps(report, indent=1)
    assert [(s["as"], s["status"], s["reason"]) for s in report["steps"]] == [
        ("soft", "failed", "timeout"),  # check false: the cycle went on
        ("hard", "failed", "step_failed"),
        ("never", "skipped", None),
    ]
    for mark in marks:
        assert Path(mark + ".child").exists(), "the child never started: the test proves nothing"
        assert survivors(mark) == [], [p.info for p in survivors(mark)]
        assert live_with_marker(mark) == []
    assert elapsed < 60, elapsed
    events = rig.events(report["cycle_id"])
    commands = [e["data"] for e in events if e["kind"] == "agent.command"]
    assert [(c["as"], c["stop_reason"], c["exit_code"], c["ok"]) for c in commands] == [
        ("soft", "deadline", None, False),
        ("hard", "deadline", None, False),
    ]
    assert all(1.5 <= c["duration_s"] < 15 for c in commands), commands
    [failed] = [e for e in events if e["kind"] == "stage.failed"]
    assert failed["data"]["as"] == "hard" and "timed out" in failed["data"]["error"]


@pytest.mark.timeout(150)
def test_same_manifest_under_run_local(rig: Rig, tmp_path: Path) -> None:
    repo, bare = make_repo(tmp_path)
    env = dict(rig.env, ORCH_STATE_DIR=str(tmp_path / "local-state"))
    with (
        WebhookServer() as hook,
        ScriptedAnthropic(script=write_file_script("hello.txt", CONTENT)) as model,
    ):
        cfg = write_config(
            tmp_path, "pipe-local", repo, model.base_url, happy_manifest(tmp_path, hook), network=[hook.netloc]
        )
        proc = orchestrate(["run", str(cfg), "--local", "--json"], env, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["status"] == "succeeded"
    assert [s["status"] for s in report["steps"]] == ["succeeded"] * 6
    assert_typed_payload(hook, report)
    assert report["pr"]["status"] == "created" and len(rig.pr_creates(report["branch"])) == 1
    assert sh(["git", "--git-dir", str(bare), "show", f"{report['branch']}:hello.txt"], tmp_path) == CONTENT.strip()
    # Local events carry the step too (the events file under the state dir).
    lines = (tmp_path / "local-state" / "local" / "events" / f"{report['cycle_id']}.events.jsonl").read_text()
    events = [json.loads(line) for line in lines.splitlines()]
    [sent] = [e for e in events if e["kind"] == "notify.sent"]
    assert (sent["data"]["step"], sent["data"]["as"], sent["data"]["ok"]) == (5, "hook", True)
    state_files = [
        p.read_bytes().decode(errors="replace") for p in (tmp_path / "local-state").rglob("*") if p.is_file()
    ]
    assert_token_never_logged(proc.stdout, proc.stderr, *state_files)
