"""The Codex `exec --json` parser on the real captured stream and on misbehaving stand-ins."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from orchestration.agents.base import RunTally
from orchestration.agents.codex import CodexStream, build_argv
from orchestration.agents.process import Verdict
from orchestration.agents.runner import run_agent
from orchestration.config import parse_config
from tests.helpers import ROOT, live_with_marker

SAMPLE = ROOT / "tests" / "fixtures" / "codex_stream_sample.jsonl"


def stream(tmp_path: Path, max_cost: float = 5.0) -> tuple[CodexStream, list[tuple[str, dict[str, Any]]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    parser = CodexStream(
        lambda k, d: events.append((k, d)),
        RunTally(),
        Path("/tmp/orchestrate-fixtures/repo"),
        max_cost,
        {},
        tmp_path,
        None,
    )
    return parser, events


def test_real_sample(tmp_path: Path) -> None:
    parser, events = stream(tmp_path)
    verdicts = [parser.feed(line) for line in SAMPLE.read_bytes().splitlines()]
    assert verdicts[-1] == Verdict.FINAL
    t = parser.tally
    assert t.success is True and t.session_id == "01a2127f-6b25-7643-ab0a-c0ea440b8ffe"
    assert t.input_tokens == 39852 - 29568 and t.cached_tokens == 29568 and t.output_tokens == 257
    assert t.files == {"CHANGELOG.md"} and t.cost_usd > 0
    kinds = [k for k, _ in events]
    assert kinds[0] == "agent.started"
    assert ("agent.command", {"command": "/bin/bash -lc 'make build'"}) in events
    failed = [d for k, d in events if k == "agent.tool_result" and d["is_error"]]
    assert failed and failed[0]["exit_code"] == 2
    assert any(k == "agent.file_change" and d["path"] == "CHANGELOG.md" for k, d in events)
    assert t.summary.startswith("Added CHANGELOG.md")


def test_transient_error_then_failed_turn_and_garbage(tmp_path: Path) -> None:
    parser, _events = stream(tmp_path)
    lines = [
        b'{"type":"thread.started","thread_id":"t1"}',
        b"not json",
        b"[1,2]",
        b'{"type":"item.completed","item":7}',
        b'{"type":"error","message":"Reconnecting... 1/5"}',
        b'{"type":"turn.failed","error":{"message":"stream disconnected"}}',
    ]
    verdicts = [parser.feed(line) for line in lines]
    assert verdicts[4] == Verdict.CONTINUE  # a transient error does not end the run
    assert verdicts[-1] == Verdict.FINAL
    assert parser.tally.success is False and parser.tally.error == "stream disconnected"
    assert parser.tally.bad_lines == 3


def test_argv_has_no_full_auto_and_keeps_the_prompt_a_prompt(tmp_path: Path) -> None:
    cfg = parse_config({"workspace": {"repo": "/x"}, "agents": {"codex": {"model": "gpt-5", "sandbox": "read-only"}}})
    argv = build_argv("codex", cfg, "review", tmp_path)
    assert argv[:3] == ["codex", "exec", "--json"]
    assert "--full-auto" not in argv
    assert argv[argv.index("--sandbox") + 1] == "read-only" and argv[argv.index("-C") + 1] == str(tmp_path)
    assert "--skip-git-repo-check" in argv and argv[argv.index("--model") + 1] == "gpt-5"
    assert argv[-2:] == ["--", "review"]


FAKE = """#!{python}
import json, sys, time
mode = sys.argv[-1].split()[0]
def out(o): print(json.dumps(o), flush=True)
out({{"type": "thread.started", "thread_id": "t-fake"}})
out({{"type": "turn.started"}})
if mode == "failed-exit0":
    out({{"type": "turn.failed", "error": {{"message": "model refused"}}}}); sys.exit(0)
if mode == "completed-exit1":
    out({{"type": "item.completed", "item": {{"id": "i", "type": "agent_message", "text": "done"}}}})
    out({{"type": "turn.completed", "usage": {{"input_tokens": 10, "cached_input_tokens": 4, "output_tokens": 2}}}})
    sys.exit(1)
if mode == "silent":
    time.sleep(600)
"""


@pytest.mark.parametrize(
    ("mode", "status", "exit_code"),
    [("failed-exit0", "failed", 0), ("completed-exit1", "succeeded", 1)],
)
def test_events_decide_not_the_exit_code(tmp_path: Path, mode: str, status: str, exit_code: int) -> None:
    fake = tmp_path / "codex"
    fake.write_text(FAKE.format(python=sys.executable))
    fake.chmod(0o755)
    cfg = parse_config({"workspace": {"repo": str(tmp_path)}, "agents": {"codex": {"command": str(fake)}}})
    marker = f"{mode} orch-codex-{time.time_ns()}"
    result = run_agent(
        agent="codex",
        cfg=cfg,
        worktree=tmp_path,
        prompt=marker,
        deadline=time.time() + 30,
        emit=lambda k, d: None,
        should_cancel=lambda: False,
    )
    assert (result.status, result.exit_code) == (status, exit_code)
    assert live_with_marker(marker.split()[1]) == []
    if status == "succeeded":
        assert (result.tokens.input, result.tokens.cached) == (6, 4)


def test_rollout_usage_drives_the_cost_cap(tmp_path: Path) -> None:
    parser, events = stream(tmp_path, max_cost=0.01)
    parser.feed(b'{"type":"thread.started","thread_id":"abc"}')
    rollout = tmp_path / "sessions" / "2026" / "11" / "25" / "rollout-2026-11-25T00-00-00-abc.jsonl"
    rollout.parent.mkdir(parents=True)
    tc = {
        "type": "token_count",
        "info": {"total_token_usage": {"input_tokens": 100_000, "cached_input_tokens": 0, "output_tokens": 5_000}},
    }
    rollout.write_bytes(orjson.dumps({"type": "event_msg", "payload": tc}) + b"\n")
    assert parser.poll() == Verdict.STOP_COST
    assert any(k == "agent.usage" for k, _ in events)
