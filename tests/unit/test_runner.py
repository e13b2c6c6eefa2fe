"""run_agent end to end against the stand-in `tests/fixtures/fake_claude.py` (no servers, real processes).

Every run puts a unique marker in the prompt (the prompt is the agent's last argv item), so the process-table
checks see only this test's agent, not another test's fake_claude running at the same time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from orchestration.agents.runner import run_agent
from orchestration.config import WorkspaceConfig, parse_config
from orchestration.models import AgentResult
from tests.helpers import live_with_marker, wait_for

pytestmark = pytest.mark.timeout(60)

FAKE_CLAUDE = Path(__file__).resolve().parent.parent / "fixtures" / "fake_claude.py"
SECRET = "supersecretvalue123"


class Run:
    def __init__(
        self, result: AgentResult, events: list[tuple[str, dict[str, Any]]], marker: str, elapsed: float
    ) -> None:
        self.result = result
        self.events = events
        self.marker = marker
        self.elapsed = elapsed

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for k, d in self.events if k == kind]

    @property
    def finished(self) -> dict[str, Any]:
        (data,) = self.of("agent.finished")
        return data


def make_cfg(
    tmp_path: Path,
    command: str | Path = FAKE_CLAUDE,
    mode: str | None = None,
    grant: tuple[str, ...] = (),
    **budget: Any,
) -> WorkspaceConfig:
    """The stand-in's mode, and any worker variable the agent should see, reach it the only way anything
    reaches an agent: the config's `agents.<name>.env` (reading `${env.NAME}` for names in env_allow)."""
    env = {"FAKE_CLAUDE_MODE": mode} if mode else {}
    env.update({name: f"${{env.{name}}}" for name in grant})
    return parse_config(
        {
            "workspace": {"repo": str(tmp_path)},
            "env_allow": list(grant),
            "agents": {"allow": ["claude-code"], "claude-code": {"command": str(command), "env": env}},
            "budget": {"max_cost_usd": 1.0, "idle_timeout_s": 30, **budget},
        }
    )


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    wt = tmp_path / "wt"
    wt.mkdir()
    subprocess.run(["git", "init", "-q", str(wt)], check=True, capture_output=True)  # noqa: S603
    return wt


def run(
    cfg: WorkspaceConfig,
    worktree: Path,
    *,
    deadline_s: float = 30,
    prompt: str = "write a file",
    cancel: Any = lambda: False,
    **kw: Any,
) -> Run:
    marker = f"orch-runner-test-{uuid.uuid4().hex}"
    events: list[tuple[str, dict[str, Any]]] = []
    t0 = time.monotonic()
    result = run_agent(
        agent="claude-code",
        cfg=cfg,
        worktree=worktree,
        prompt=f"{prompt} {marker}",
        deadline=time.time() + deadline_s,
        emit=lambda kind, data: events.append((kind, data)),
        should_cancel=cancel,
        **kw,
    )
    return Run(result, events, marker, time.monotonic() - t0)


def assert_nothing_alive(r: Run) -> None:
    # The group was killed before run_agent returned; allow the kernel a moment to reap.
    assert wait_for(lambda: live_with_marker(r.marker) == [], timeout=3), live_with_marker(r.marker)


def test_ok(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, worktree: Path) -> None:
    started: list[int] = []
    r = run(make_cfg(tmp_path, mode="ok"), worktree, on_started=started.append, log_dir=tmp_path / "logs")
    res = r.result
    assert res.status == "succeeded"
    assert res.exit_code == 0
    assert res.files_changed == ["orchestrated.txt"]
    assert res.cost_usd == pytest.approx(0.0123)
    assert res.num_turns == 2
    assert res.session_id
    assert res.summary == "Wrote the file."
    assert res.stop_reason is None
    assert (res.tokens.input, res.tokens.output, res.tokens.cached) == (100, 20, 5)
    assert (worktree / "orchestrated.txt").read_text() == "written by the fake agent\n"
    assert len(started) == 1 and started[0] > 0

    kinds = r.kinds()
    assert kinds[0] == "agent.started"
    assert kinds[-1] == "agent.finished"
    for kind in ("agent.tool_call", "agent.file_change", "agent.tool_result", "agent.message", "agent.usage"):
        assert kind in kinds
    assert r.of("agent.tool_call")[0] == {"tool": "Write", "path": "orchestrated.txt"}
    assert r.of("agent.started")[0]["session_id"] == res.session_id
    assert r.finished["status"] == "succeeded"
    assert r.finished["bad_lines"] == 0
    assert r.finished["stderr"] == ""
    assert (tmp_path / "logs" / "claude-code.stderr.log").exists()
    json.dumps(r.events)
    assert_nothing_alive(r)


def test_argv_reaches_the_agent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, worktree: Path) -> None:
    """The agent sees stream-json flags, its budget, and the prompt last, with stdin closed."""
    spy = tmp_path / "spy.py"
    out = tmp_path / "argv.json"
    spy.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "seen = {'argv': sys.argv[1:], 'stdin': sys.stdin.read(), 'cwd': os.getcwd()}\n"
        f"json.dump(seen, open({str(out)!r}, 'w'))\n"
        "print(json.dumps({'type': 'result', 'subtype': 'success', 'is_error': False, 'num_turns': 1,\n"
        "                  'total_cost_usd': 0.0, 'result': 'nothing'}))\n"
    )
    spy.chmod(0o755)
    r = run(make_cfg(tmp_path, spy, max_turns=7), worktree, prompt="-dash prompt")
    assert r.result.status == "succeeded"
    seen = json.loads(out.read_text())
    assert seen["argv"][-2:] == ["--", f"-dash prompt {r.marker}"]
    assert "--verbose" in seen["argv"]
    assert seen["argv"][seen["argv"].index("--max-turns") + 1] == "7"
    assert seen["stdin"] == ""
    assert Path(seen["cwd"]).resolve() == worktree.resolve()


def test_error_result_is_failed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, worktree: Path) -> None:
    r = run(make_cfg(tmp_path, mode="error_result"), worktree)
    assert r.result.status == "failed"
    assert r.result.exit_code == 0  # the exit code said fine; the result event said otherwise
    assert r.result.stop_reason == "is_error"
    assert r.result.files_changed == ["orchestrated.txt"]  # the work it did is still reported
    assert r.finished["status"] == "failed"
    assert_nothing_alive(r)


def test_exit1_with_success_result_is_succeeded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, worktree: Path
) -> None:
    r = run(make_cfg(tmp_path, mode="exit1_success"), worktree)
    assert r.result.status == "succeeded"
    assert r.result.exit_code == 1
    assert r.result.cost_usd == pytest.approx(0.0123)
    assert_nothing_alive(r)


def test_garbage_lines_do_not_break_the_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, worktree: Path) -> None:
    r = run(make_cfg(tmp_path, mode="garbage"), worktree)
    assert r.result.status == "succeeded"
    assert r.result.files_changed == ["orchestrated.txt"]
    assert r.result.cost_usd == pytest.approx(0.0123)
    # "not json at all", {"message": 42}, [1,2], {"trunc
    assert r.finished["bad_lines"] == 4
    assert_nothing_alive(r)


def test_final_without_exit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, worktree: Path) -> None:
    # The supervisor waits after_final_grace_s after the result event before killing the lingering agent.
    r = run(make_cfg(tmp_path, mode="final_no_exit"), worktree, deadline_s=40, after_final_grace_s=1.5)
    assert r.result.status == "succeeded"  # the result event said success
    assert r.result.stop_reason == "no_exit_after_final"
    assert r.result.cost_usd == pytest.approx(0.0123)
    assert 1.5 <= r.elapsed < 10
    assert_nothing_alive(r)


def test_hang_is_stopped_at_the_deadline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, worktree: Path) -> None:
    r = run(make_cfg(tmp_path, mode="hang"), worktree, deadline_s=3)
    assert r.result.status == "timed_out"
    assert r.result.stop_reason == "deadline"
    assert r.result.files_changed == ["orchestrated.txt"]
    assert r.elapsed < 3 + 5 + 3  # deadline + kill grace + slack
    assert r.finished["status"] == "timed_out"
    assert_nothing_alive(r)


def test_hang_is_stopped_when_idle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, worktree: Path) -> None:
    r = run(make_cfg(tmp_path, mode="hang", idle_timeout_s=2), worktree, deadline_s=30)
    assert r.result.status == "failed"
    assert r.result.stop_reason == "idle_timeout"
    assert r.elapsed < 15
    assert_nothing_alive(r)


def test_cancel_stops_the_agent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, worktree: Path) -> None:
    t0 = time.monotonic()
    r = run(make_cfg(tmp_path, mode="slow"), worktree, deadline_s=30, cancel=lambda: time.monotonic() - t0 > 2)
    assert r.result.status == "cancelled"
    assert r.result.stop_reason == "cancelled"
    assert r.elapsed < 15
    assert_nothing_alive(r)


def test_missing_command_is_a_failed_result(tmp_path: Path, worktree: Path) -> None:
    for command in ("orchestrate-no-such-agent-xyz", str(tmp_path / "missing" / "claude")):
        r = run(make_cfg(tmp_path, command), worktree)
        assert r.result.status == "failed"
        assert r.result.stop_reason == "agent_not_found"
        assert r.finished["stop_reason"] == "agent_not_found"
        assert r.kinds() == ["agent.finished"]


def test_not_executable_command_is_a_failed_result(tmp_path: Path, worktree: Path) -> None:
    plain = tmp_path / "claude"
    plain.write_text("#!/bin/sh\nexit 0\n")
    plain.chmod(0o644)
    r = run(make_cfg(tmp_path, plain), worktree)
    assert r.result.status == "failed"
    assert r.result.stop_reason == "agent_not_found"


def test_agent_that_exits_without_result_is_failed(tmp_path: Path, worktree: Path) -> None:
    script = tmp_path / "crash.py"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.stderr.write('boom: no credentials\\n')\nsys.exit(3)\n")
    script.chmod(0o755)
    r = run(make_cfg(tmp_path, script), worktree, log_dir=tmp_path / "logs")
    assert r.result.status == "failed"
    assert r.result.exit_code == 3
    assert r.result.stop_reason == "no_result_event"
    assert "boom" in r.result.summary
    assert "boom" in r.finished["stderr"]


def test_secrets_never_reach_events(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, worktree: Path) -> None:
    monkeypatch.setenv("MY_API_KEY", SECRET)
    leaky = tmp_path / "leaky.py"
    leaky.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "key = os.environ['MY_API_KEY']\n"
        "def out(o): print(json.dumps(o), flush=True)\n"
        "out({'type': 'system', 'subtype': 'init', 'session_id': 's-' + key, 'model': 'm'})\n"
        "out({'type': 'assistant', 'message': {'id': 'm1', 'content': [\n"
        "    {'type': 'text', 'text': 'the key is ' + key},\n"
        "    {'type': 'tool_use', 'id': 't1', 'name': 'Bash', 'input': {'command': 'echo ' + key}}]}})\n"
        "out({'type': 'user', 'message': {'content': [\n"
        "    {'type': 'tool_result', 'tool_use_id': 't1', 'content': key}]}})\n"
        "sys.stderr.write('stderr has ' + key + '\\n')\n"
        "out({'type': 'result', 'subtype': 'success', 'is_error': True, 'num_turns': 1,\n"
        "     'total_cost_usd': 0.0, 'result': 'failed with key ' + key})\n"
    )
    leaky.chmod(0o755)
    r = run(make_cfg(tmp_path, leaky, grant=("MY_API_KEY",)), worktree, log_dir=tmp_path / "logs")
    dumped = json.dumps(r.events)
    assert r.of("agent.message"), "the assistant text was emitted"
    assert "***" in r.of("agent.message")[0]["text"]
    assert SECRET not in dumped
    assert SECRET not in r.result.summary
    assert r.result.status == "failed"  # is_error true


def test_a_secret_split_over_two_agent_events_is_masked_in_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, worktree: Path
) -> None:
    """The run's redactor knows the worker's secrets and remembers the previous event: neither half of a
    value (nor of a token shape) split over two messages shows."""
    monkeypatch.setenv("MY_API_KEY", SECRET)
    token = "ghp_" + "Xy7" * 12
    splitter = tmp_path / "splitter.py"
    splitter.write_text(
        f"#!{sys.executable}\n"
        "import json\n"
        "def out(o): print(json.dumps(o), flush=True)\n"
        "def say(i, text): out({'type': 'assistant', 'message': {'id': f'm{i}', 'content': [\n"
        "    {'type': 'text', 'text': text}]}})\n"
        "out({'type': 'system', 'subtype': 'init', 'session_id': 's1', 'model': 'm'})\n"
        f"say(1, 'the key is {SECRET[:9]}')\n"
        f"say(2, '{SECRET[9:]} and the token is {token[:12]}')\n"
        f"say(3, '{token[12:]} - done')\n"
        "out({'type': 'result', 'subtype': 'success', 'is_error': False, 'num_turns': 1,\n"
        "     'total_cost_usd': 0.0, 'result': 'ok'})\n"
    )
    splitter.chmod(0o755)
    r = run(make_cfg(tmp_path, splitter), worktree)
    texts = [d["text"] for d in r.of("agent.message")]
    assert texts == ["the key is ***", "*** and the token is ***", "*** - done"]
    joined = "".join(texts)
    assert SECRET[:6] not in joined and SECRET[-6:] not in joined and token[4:] not in joined


def test_streamed_usage_over_the_cost_cap_stops_the_agent(tmp_path: Path, worktree: Path) -> None:
    spender = tmp_path / "spender.py"
    spender.write_text(
        f"#!{sys.executable}\n"
        "import json, time\n"
        "def out(o): print(json.dumps(o), flush=True)\n"
        "out({'type': 'system', 'subtype': 'init', 'session_id': 's1', 'model': 'claude-sonnet-4-5'})\n"
        "for i in range(600):\n"
        "    out({'type': 'assistant', 'message': {'id': f'm{i}', 'model': 'claude-sonnet-4-5',\n"
        "         'content': [], 'usage': {'input_tokens': 100000, 'output_tokens': 1}}})\n"
        "    time.sleep(0.1)\n"
    )
    spender.chmod(0o755)
    r = run(make_cfg(tmp_path, spender, max_cost_usd=1.0), worktree)
    # sonnet input: $3/Mtok, so $0.30 per line: the fourth line crosses $1.
    assert r.result.status == "failed"
    assert r.result.stop_reason == "cost_limit"
    assert 1.0 <= r.result.cost_usd < 1.5
    assert r.elapsed < 15
    assert_nothing_alive(r)


@pytest.mark.parametrize("limit", [{"deadline_s": 3}, {"idle_timeout_s": 2}], ids=["deadline", "idle"])
def test_success_result_stands_when_the_agent_lingers_past_a_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, worktree: Path, limit: dict[str, Any]
) -> None:
    """The final result event said success; the agent then failed to exit and was stopped by a limit
    that fell inside the 10 s after-final grace. Events are the authority: the run succeeded."""
    cfg = make_cfg(tmp_path, mode="final_no_exit", idle_timeout_s=limit.get("idle_timeout_s", 30))
    r = run(cfg, worktree, deadline_s=limit.get("deadline_s", 30), after_final_grace_s=5)
    assert_nothing_alive(r)
    assert r.result.cost_usd == pytest.approx(0.0123)
    assert r.result.status == "succeeded", (r.result.status, r.result.stop_reason)
