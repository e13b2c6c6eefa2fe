"""The session analyzer on realistic Claude Code transcripts and Codex rollouts, and on garbage."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestration.config import Sessions
from orchestration.models import Insights
from orchestration.sessions import _common, analyze_sessions, claude, codex
from orchestration.sessions._common import Workspace

# ----------------------------------------------------------------------------------------- fixtures


def write_jsonl(path: Path, lines: list[Any], newline_at_end: bool = True) -> Path:
    """Objects are JSON-encoded, bytes written as-is (for garbage)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = [line if isinstance(line, bytes) else orjson.dumps(line) for line in lines]
    data = b"\n".join(chunks) + (b"\n" if newline_at_end else b"")
    path.write_bytes(data)
    return path


def set_age(path: Path, days: float) -> None:
    t = (datetime.now(UTC) - timedelta(days=days)).timestamp()
    os.utime(path, (t, t))


def ts(minute: int, hour: int = 10) -> str:
    return f"2025-11-19T{hour:02d}:{minute:02d}:00.000Z"


class Claude:
    """Builds Claude Code transcript lines shaped like the real ones (v2.x)."""

    def __init__(
        self, cwd: str, session: str = "5a0ddcd0-5487-4794-99ac-143f6bb9e248", sidechain: bool = False
    ) -> None:
        self.cwd, self.session, self.sidechain = cwd, session, sidechain
        self.n = 0

    def _base(self, kind: str, minute: int) -> dict[str, Any]:
        self.n += 1
        return {
            "parentUuid": None,
            "isSidechain": self.sidechain,
            "userType": "external",
            "cwd": self.cwd,
            "sessionId": self.session,
            "version": "2.0.46",
            "gitBranch": "main",
            "type": kind,
            "uuid": f"{self.session[:8]}-u{self.n}",
            "timestamp": ts(minute),
        }

    def prompt(self, text: str | list[Any], minute: int, **extra: Any) -> dict[str, Any]:
        return {**self._base("user", minute), "message": {"role": "user", "content": text}, **extra}

    def assistant(
        self, msg_id: str, req: str, minute: int, blocks: list[dict[str, Any]], usage: Any, **extra: Any
    ) -> dict[str, Any]:
        return {
            **self._base("assistant", minute),
            "requestId": req,
            "message": {
                "model": "claude-sonnet-4-5-20250929",
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "content": blocks,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage,
            },
            **extra,
        }

    def tool_result(self, tool_use_id: str, minute: int, is_error: bool = False) -> dict[str, Any]:
        block = {"tool_use_id": tool_use_id, "type": "tool_result", "content": "ok"}
        if is_error:
            error = "<tool_use_error>File does not exist.</tool_use_error>"
            block = {**block, "content": error, "is_error": True}
        return {
            **self._base("user", minute),
            "message": {"role": "user", "content": [block]},
            "toolUseResult": "Error" if is_error else {"type": "text"},
        }


def usage(inp: int, out: int, cache_write: int = 0, cache_read: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": inp,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": cache_write, "ephemeral_1h_input_tokens": 0},
        "output_tokens": out,
        "service_tier": "standard",
    }


def tool_use(tid: str, name: str, **inp: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": tid, "name": name, "input": inp}


def cfg(tmp: Path, **kw: Any) -> Sessions:
    base: dict[str, Any] = {"claude_dir": str(tmp / "claude"), "codex_dir": str(tmp / "codex")}
    return Sessions(**{**base, **kw})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "repo" / "src").mkdir(parents=True)
    return tmp_path / "repo"


def project(tmp_path: Path, name: str = "-x-repo") -> Path:
    return tmp_path / "claude" / "projects" / name


# ------------------------------------------------------------------------------------- claude code


def test_claude_counts_one_api_response_once(tmp_path: Path, repo: Path) -> None:
    c = Claude(str(repo))
    lines = [
        {"type": "summary", "summary": "Fix the parser", "leafUuid": "abc"},
        c.prompt("make the parser tolerant", 1),
        # one response streamed as three lines sharing message.id + requestId; the last has the final usage
        c.assistant(
            "msg_01A",
            "req_01A",
            2,
            [{"type": "thinking", "thinking": "hm", "signature": "s"}],
            usage(3, 1, cache_write=162, cache_read=17545),
        ),
        c.assistant(
            "msg_01A",
            "req_01A",
            2,
            [{"type": "text", "text": "Reading it."}],
            usage(3, 1, cache_write=162, cache_read=17545),
        ),
        c.assistant(
            "msg_01A",
            "req_01A",
            2,
            [tool_use("toolu_1", "Read", file_path=str(repo / "src/p.py"))],
            usage(3, 230, cache_write=162, cache_read=17545),
        ),
        c.tool_result("toolu_1", 3),
        c.assistant("msg_01B", "req_01B", 4, [{"type": "text", "text": "Done."}], usage(5, 40, 0, 17707)),
    ]
    write_jsonl(project(tmp_path) / f"{c.session}.jsonl", lines)
    # the same history copied into a resumed session's file must not count twice
    resumed = Claude(str(repo), session="9b1f1f1f-0000-4000-8000-000000000000")
    copy = [{**line, "sessionId": resumed.session} if "sessionId" in line else line for line in lines]
    copy.append(resumed.prompt("now add tests", 30))
    copy.append(resumed.assistant("msg_01C", "req_01C", 31, [], usage(7, 11, 100, 0)))
    write_jsonl(project(tmp_path) / f"{resumed.session}.jsonl", copy)

    ins = analyze_sessions(repo, cfg(tmp_path, providers=["claude-code"]))
    cc = ins.providers["claude-code"]
    assert cc.tokens.model_dump() == {
        "input": 3 + 5 + 7,
        "output": 230 + 40 + 11,
        "cache_read": 17545 + 17707,
        "cache_write": 162 + 100,
    }
    assert cc.sessions == 2
    assert cc.turns == 2
    assert cc.tool_calls == 1
    assert cc.tools == {"Read": 1}
    assert cc.files == {"src/p.py": 1}
    assert cc.goals == ["now add tests", "make the parser tolerant"]
    assert ins.tokens == cc.tokens
    assert ins.first_at == "2025-11-19T10:01:00.000Z"
    assert ins.last_at == "2025-11-19T10:31:00.000Z"


def test_claude_cwd_filter_uses_realpath_and_rejects_sibling_prefix(tmp_path: Path, repo: Path) -> None:
    (tmp_path / "repo2").mkdir()
    (tmp_path / "link").symlink_to(repo)
    cwds = {
        "a": str(repo),
        "b": str(repo / "src"),
        "c": str(tmp_path / "link"),  # inside
        "d": str(tmp_path / "repo2"),
        "e": "/elsewhere",
        "f": "relative/repo",  # outside
    }
    for name, cwd in cwds.items():
        c = Claude(cwd, session=name)
        # the project directory name would decode to the repo: it must not matter
        write_jsonl(project(tmp_path) / f"{name}.jsonl", [c.prompt(f"task {name}", 1)])
    write_jsonl(project(tmp_path) / "g.jsonl", [{"type": "summary", "summary": "no cwd anywhere"}])

    cc = analyze_sessions(repo, cfg(tmp_path, providers=["claude-code"])).providers["claude-code"]
    assert cc.sessions == 3
    assert sorted(cc.goals) == ["task a", "task b", "task c"]
    assert cc.skipped == {"other_workspace": 3, "no_cwd": 1}


def test_workspace_contains() -> None:
    ws = Workspace("/x/repo")
    assert ws.contains("/x/repo") and ws.contains("/x/repo/") and ws.contains("/x/repo/a/b")
    assert not ws.contains("/x/repo2") and not ws.contains("/x/rep") and not ws.contains("/x")
    assert not ws.contains("repo") and not ws.contains("") and not ws.contains("/x/\x00repo")
    assert ws.relative("/x/repo/a.py") == "a.py"
    assert ws.relative("b.py", "/x/repo/src") == "src/b.py"
    assert ws.relative("/x/repo2/a.py") == "/x/repo2/a.py"


def test_claude_subagent_files_count_toward_their_session(tmp_path: Path, repo: Path) -> None:
    main = Claude(str(repo))
    write_jsonl(
        project(tmp_path) / f"{main.session}.jsonl",
        [
            main.prompt("find the slow test", 1),
            main.assistant(
                "msg_m1", "req_m1", 2, [tool_use("toolu_task", "Task", prompt="look for slow tests")], usage(10, 20)
            ),
            main.tool_result("toolu_task", 9),
        ],
    )
    sub = Claude(str(repo), session=main.session, sidechain=True)
    write_jsonl(
        project(tmp_path) / main.session / "subagents" / "agent-a748733.jsonl",
        [
            sub.prompt("look for slow tests", 3),  # written by Claude, not the person
            sub.assistant(
                "msg_s1",
                "req_s1",
                4,
                [tool_use("toolu_g", "Grep", pattern="sleep", path=str(repo))],
                usage(100, 50, cache_read=1000),
            ),
            sub.assistant(
                "msg_s2", "req_s2", 5, [tool_use("toolu_r", "Read", file_path=str(repo / "src/t.py"))], usage(1, 2)
            ),
            sub.tool_result("toolu_r", 6, is_error=True),
        ],
    )
    cc = analyze_sessions(repo, cfg(tmp_path, providers=["claude-code"])).providers["claude-code"]
    assert cc.sessions == 1
    assert cc.turns == 1 and cc.goals == ["find the slow test"]
    assert cc.tokens.input == 111 and cc.tokens.output == 72 and cc.tokens.cache_read == 1000
    assert cc.tools == {"Grep": 1, "Read": 1, "Task": 1}
    assert cc.files == {"src/t.py": 1}  # Grep's `path` is a directory, not a file touched
    assert cc.failures == {"Read": 1}


def test_claude_real_prompts_only_and_tool_details(tmp_path: Path, repo: Path) -> None:
    c = Claude(str(repo / "src"))
    write_jsonl(
        project(tmp_path) / f"{c.session}.jsonl",
        [
            c.prompt("<command-name>/clear</command-name>\n<command-message>clear</command-message>", 1),
            c.prompt("<local-command-stdout></local-command-stdout>", 1),
            c.prompt(
                "Caveat: The messages below were generated by the user while running local commands.", 1, isMeta=True
            ),
            c.prompt([{"type": "text", "text": "<system-reminder>be brief</system-reminder>"}], 1),
            c.prompt([{"type": "text", "text": "[Request interrupted by user for tool use]"}], 2),
            c.prompt("This session is being continued from a previous conversation ...", 2, isCompactSummary=True),
            c.prompt(
                [
                    {"type": "text", "text": "  first real request  "},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}},
                ],
                3,
            ),
            c.assistant(
                "msg_1",
                "req_1",
                4,
                [
                    tool_use("toolu_e", "Edit", file_path=str(repo / "src/a.py"), old_string="x", new_string="y"),
                    tool_use("toolu_w", "Write", file_path="b.py", content=""),  # relative → against the line's cwd
                    tool_use("toolu_n", "NotebookEdit", notebook_path=str(repo / "nb.ipynb"), new_source=""),
                    tool_use("toolu_o", "Read", file_path="/etc/hosts"),
                    tool_use("toolu_b", "Bash", command="pytest -q"),
                ],
                usage(1, 1),
                costUSD=0.25,
            ),
            c.tool_result("toolu_b", 5, is_error=True),
            c.tool_result("toolu_e", 5, is_error=True),
            c.tool_result("toolu_missing", 5, is_error=True),
            c.prompt("x" * 1000, 6),
            {**c.assistant("msg_2", "req_2", 7, [], usage(1, 1)), "costUSD": 0.5},
        ],
    )
    ins = analyze_sessions(repo, cfg(tmp_path, providers=["claude-code"]))
    cc = ins.providers["claude-code"]
    assert cc.turns == 2
    assert cc.goals == ["x" * 300, "first real request"]
    assert cc.tools == {"Bash": 1, "Edit": 1, "NotebookEdit": 1, "Read": 1, "Write": 1}
    assert cc.tool_calls == 5
    assert cc.files == {"/etc/hosts": 1, "nb.ipynb": 1, "src/a.py": 1, "src/b.py": 1}
    assert cc.failures == {"pytest": 1, "Edit": 1, "unknown": 1}  # Bash failures are named by their command
    assert cc.cost_usd == pytest.approx(0.75)
    assert ins.cost_usd == pytest.approx(0.75)
    assert cc.skipped == {}


def test_claude_task_notifications_are_not_prompts(tmp_path: Path, repo: Path) -> None:
    """A background agent's end arrives as a user line Claude Code queues itself (`promptSource: "system"`,
    `<task-notification>`): the model answers it, nobody typed it. Older versions wrote the same text
    without `promptSource`."""
    c = Claude(str(repo))
    note = (
        "<task-notification>\n<task-id>a8c644fe66aa6c5d8</task-id>\n<status>completed</status>\n"
        '<summary>Agent "Inspect repo" finished</summary>\n</task-notification>'
    )
    queued = {"origin": {"kind": "task-notification"}, "turnOrigin": "task_notification"}
    write_jsonl(
        project(tmp_path) / f"{c.session}.jsonl",
        [
            c.prompt("inspect the repo in the background", 1, promptSource="user"),
            c.assistant("msg_1", "req_1", 2, [tool_use("toolu_a", "Agent", prompt="inspect")], usage(1, 1)),
            c.tool_result("toolu_a", 2),
            c.prompt(note, 3, promptSource="system", **queued),
            c.assistant("msg_2", "req_2", 4, [{"type": "text", "text": "the agent is done"}], usage(1, 1)),
            c.prompt("system-made, whatever it says", 5, promptSource="system"),
            c.prompt([{"type": "text", "text": note}], 6),  # no promptSource: an older Claude Code
            c.prompt("now fix the test", 7, promptSource="user"),
        ],
    )
    cc = analyze_sessions(repo, cfg(tmp_path, providers=["claude-code"]), cache_dir=None).providers["claude-code"]
    assert cc.turns == 2
    assert cc.goals == ["now fix the test", "inspect the repo in the background"]


def test_claude_tilde_dirs_are_expanded(tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    c = Claude(str(repo))
    write_jsonl(tmp_path / "home" / ".claude" / "projects" / "p" / "s.jsonl", [c.prompt("hi", 1)])
    ins = analyze_sessions(repo, Sessions(providers=["claude-code"], claude_dir="~/.claude"))
    assert ins.sessions == 1


# ------------------------------------------------------------------------------------------- codex


def rollout(tmp_path: Path, name: str = "rollout-2025-11-19T10-00-00-0199a213.jsonl", day: str = "2025/11/19") -> Path:
    return tmp_path / "codex" / "sessions" / day / name


def envelope(kind: str, minute: int, **payload: Any) -> dict[str, Any]:
    return {"timestamp": ts(minute), "type": kind, "payload": payload}


def token_count(minute: int, total: dict[str, int] | None, last: dict[str, int] | None) -> dict[str, Any]:
    info = (
        None
        if total is None and last is None
        else {
            "total_token_usage": total,
            "last_token_usage": last,
            "model_context_window": 272000,
        }
    )
    if info is not None:
        info = {k: v for k, v in info.items() if v is not None}
    return envelope(
        "event_msg",
        minute,
        type="token_count",
        info=info,
        rate_limits={"primary": {"used_percent": 7.0, "window_minutes": 300}},
    )


def tc(inp: int, cached: int, out: int, reasoning: int) -> dict[str, int]:
    return {
        "input_tokens": inp,
        "cached_input_tokens": cached,
        "output_tokens": out,
        "reasoning_output_tokens": reasoning,
        "total_tokens": inp + out,
    }


PATCH = "*** Begin Patch\n*** Update File: src/app.py\n@@\n-a\n+b\n*** Add File: tests/test_app.py\n+x\n*** End Patch"


def test_codex_current_format(tmp_path: Path, repo: Path) -> None:
    sid = "0199a213-81c0-7800-8aa1-bbab2a035a53"
    write_jsonl(
        rollout(tmp_path),
        [
            envelope(
                "session_meta",
                0,
                id=sid,
                timestamp=ts(0),
                cwd=str(repo),
                originator="codex_cli_rs",
                cli_version="0.58.0",
                instructions=None,
                git={"branch": "main"},
            ),
            envelope(
                "response_item",
                0,
                type="message",
                role="user",
                content=[
                    {
                        "type": "input_text",
                        "text": f"<environment_context>\n  <cwd>{repo}</cwd>\n</environment_context>",
                    }
                ],
            ),
            envelope(
                "turn_context",
                1,
                cwd=str(repo),
                approval_policy="on-request",
                model="gpt-5-codex",
                sandbox_policy={"mode": "workspace-write"},
                summary="auto",
            ),
            envelope(
                "response_item",
                1,
                type="message",
                role="user",
                content=[{"type": "input_text", "text": "fix the failing tests"}],
            ),
            envelope("event_msg", 1, type="user_message", message="fix the failing tests", images=[]),
            token_count(1, None, None),  # info: null before the first response
            envelope("response_item", 2, type="reasoning", summary=[], encrypted_content="gAAA"),
            envelope(
                "response_item",
                2,
                type="function_call",
                name="shell",
                call_id="call_1",
                arguments=orjson.dumps(
                    {"command": ["bash", "-lc", "cd src && pytest -q tests"], "workdir": str(repo)}
                ).decode(),
            ),
            envelope(
                "event_msg",
                2,
                type="exec_command_end",
                call_id="call_1",
                exit_code=1,
                command=["bash", "-lc", "cd src && pytest -q tests"],
                stdout="",
                stderr="",
                duration="1s",
            ),
            envelope(
                "response_item",
                2,
                type="function_call_output",
                call_id="call_1",
                output='{"output":"1 failed","metadata":{"exit_code":1,"duration_seconds":1.2}}',
            ),
            token_count(2, tc(1000, 200, 50, 20), tc(1000, 200, 50, 20)),
            envelope(
                "response_item",
                3,
                type="custom_tool_call",
                status="completed",
                call_id="call_2",
                name="apply_patch",
                input=PATCH,
            ),
            envelope(
                "response_item",
                3,
                type="custom_tool_call_output",
                call_id="call_2",
                output='{"output":"Success.","metadata":{"exit_code":0}}',
            ),
            envelope(
                "response_item",
                3,
                type="function_call",
                name="exec_command",
                call_id="call_3",
                arguments='{"cmd": "git push origin HEAD", "yield_time_ms": 1000}',
            ),
            envelope(
                "response_item",
                3,
                type="function_call_output",
                call_id="call_3",
                output="Chunk ID: 1\nWall time: 0.2 seconds\nProcess exited with code 128\nOutput:\nfatal",
            ),
            envelope(
                "response_item", 3, type="function_call", name="update_plan", call_id="call_4", arguments='{"plan": []}'
            ),
            token_count(3, tc(2500, 1200, 300, 120), tc(1500, 1000, 250, 100)),
            token_count(3, tc(2500, 1200, 300, 120), tc(1500, 1000, 250, 100)),  # repeated event: no double count
            envelope("event_msg", 4, type="user_message", message="<user_instructions>be nice</user_instructions>"),
            envelope("event_msg", 5, type="user_message", message="  now run the linter  "),
            envelope("event_msg", 5, type="turn_aborted", reason="interrupted"),
            envelope("compacted", 6, message="summary", replacement_history=[]),
            envelope("event_msg", 6, type="task_complete", last_agent_message="done"),
        ],
    )
    cx = analyze_sessions(repo, cfg(tmp_path, providers=["codex"])).providers["codex"]
    assert cx.sessions == 1
    assert cx.tokens.model_dump() == {"input": 1300, "output": 300, "cache_read": 1200, "cache_write": 0}
    assert cx.turns == 2
    assert cx.goals == ["now run the linter", "fix the failing tests"]
    assert cx.tools == {"apply_patch": 1, "shell": 2, "update_plan": 1}
    assert cx.tool_calls == 4
    assert cx.files == {"src/app.py": 1, "tests/test_app.py": 1}
    assert cx.failures == {"git push": 1, "pytest": 1}
    assert cx.cost_usd is None
    assert cx.first_at == "2025-11-19T10:00:00.000Z" and cx.last_at == "2025-11-19T10:06:00.000Z"
    assert cx.skipped == {}


def test_codex_sums_deltas_when_no_total(tmp_path: Path, repo: Path) -> None:
    write_jsonl(
        rollout(tmp_path),
        [
            envelope("session_meta", 0, id="s1", cwd=str(repo)),
            token_count(1, None, tc(100, 40, 10, 5)),
            token_count(2, None, tc(200, 150, 20, 0)),
            token_count(3, None, {"input_tokens": 10, "cached_input_tokens": 50, "output_tokens": "7"}),  # odd
        ],
    )
    cx = analyze_sessions(repo, cfg(tmp_path, providers=["codex"])).providers["codex"]
    assert cx.tokens.model_dump() == {"input": 60 + 50 + 0, "output": 30, "cache_read": 40 + 150 + 10, "cache_write": 0}


def test_codex_old_format(tmp_path: Path, repo: Path) -> None:
    write_jsonl(
        tmp_path / "codex" / "sessions" / "2025" / "05" / "02" / "rollout-2025-05-02-abc.jsonl",
        [
            {
                "id": "c0ffee00-1111-2222-3333-444455556666",
                "timestamp": "2025-05-02T09:00:00.000Z",
                "instructions": "be careful",
                "git": {"commit_hash": "abc", "branch": "main"},
            },
            {"record_type": "state"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {
                        "type": "input_text",
                        "text": f"<environment_context>\n<cwd>{repo / 'src'}</cwd>\n"
                        "<approval_policy>on-request</approval_policy>\n</environment_context>",
                    }
                ],
            },
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "rename foo to bar"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "function_call",
                "name": "shell",
                "call_id": "call_a",
                "arguments": orjson.dumps({"command": ["apply_patch", PATCH.replace("src/app.py", "app.py")]}).decode(),
            },
            {
                "type": "function_call_output",
                "call_id": "call_a",
                "output": '{"output":"Done!","metadata":{"exit_code":0,"duration_seconds":0.1}}',
            },
            {
                "type": "function_call",
                "name": "shell",
                "call_id": "call_b",
                "arguments": '{"command":["bash","-lc","npm test -- --watch=false"]}',
            },
            {
                "type": "function_call_output",
                "call_id": "call_b",
                "output": '{"output":"boom","metadata":{"exit_code":2,"duration_seconds":3.0}}',
            },
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "renamed"}]},
            {"record_type": "state"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "thanks, commit it"}]},
        ],
    )
    cx = analyze_sessions(repo, cfg(tmp_path, providers=["codex"])).providers["codex"]
    assert cx.sessions == 1
    assert cx.turns == 2 and set(cx.goals) == {"rename foo to bar", "thanks, commit it"}
    assert cx.tools == {"apply_patch": 1, "shell": 1}
    # patch paths are relative to the session's cwd (repo/src)
    assert cx.files == {"src/app.py": 1, "src/tests/test_app.py": 1}
    assert cx.failures == {"npm test": 1}
    assert cx.tokens.model_dump() == {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}
    assert cx.first_at == "2025-05-02T09:00:00.000Z"
    assert cx.skipped == {}


def test_codex_archived_duplicates_and_other_workspaces(tmp_path: Path, repo: Path) -> None:
    (tmp_path / "repo2").mkdir()
    meta = envelope("session_meta", 0, id="same", cwd=str(repo))
    write_jsonl(rollout(tmp_path, "rollout-a.jsonl"), [meta, token_count(1, tc(10, 0, 1, 0), None)])
    write_jsonl(
        tmp_path / "codex" / "archived_sessions" / "rollout-a.jsonl", [meta, token_count(1, tc(10, 0, 1, 0), None)]
    )
    write_jsonl(
        rollout(tmp_path, "rollout-b.jsonl"), [envelope("session_meta", 0, id="b", cwd=str(tmp_path / "repo2"))]
    )
    write_jsonl(rollout(tmp_path, "notes.jsonl"), [meta])  # not a rollout file name
    cx = analyze_sessions(repo, cfg(tmp_path, providers=["codex"])).providers["codex"]
    assert cx.sessions == 1
    assert cx.tokens.input == 10
    assert cx.skipped == {"duplicate_session": 1, "other_workspace": 1}


@pytest.mark.parametrize(
    ("script", "key"),
    [
        ("pytest -q tests", "pytest"),
        ("cd src && FOO=1 python -m pytest -x", "python -m pytest"),
        ("git push origin main", "git push"),
        ("sudo make install", "make install"),
        ("/usr/bin/cargo build --release", "cargo build"),
        ("echo 'unterminated", "echo"),
        ("", "shell"),
        (None, "shell"),
        ("cd /x", "shell"),
    ],
)
def test_command_key(script: str | None, key: str) -> None:
    assert codex.command_key(script) == key


def test_shell_script_and_exit_codes() -> None:
    assert codex.shell_script(["bash", "-lc", "ls -la"]) == "ls -la"
    assert codex.shell_script(["/bin/zsh", "-c", "ls"]) == "ls"
    assert codex.shell_script(["rg", "foo"]) == "rg foo"
    assert codex.shell_script([1, 2]) is None and codex.shell_script({"a": 1}) is None
    assert codex.output_exit_code("Exit code: 3\nWall time: 1s\nOutput:\n") == 3
    assert codex.output_exit_code('{"output": "", "metadata": {"exit_code": 0}}') == 0
    assert codex.output_exit_code('{"output": "", "metadata": {"exit_code": true}}') is None
    assert codex.output_exit_code("{not json") is None
    assert codex.output_exit_code("plain text") is None
    assert codex.patch_files(PATCH) == ["src/app.py", "tests/test_app.py"]


# -------------------------------------------------------------------------------- limits and garbage


def test_since_days_and_max_sessions(tmp_path: Path, repo: Path) -> None:
    for i, age in enumerate([0.1, 1, 2, 30]):
        c = Claude(str(repo), session=f"s{i}")
        path = write_jsonl(project(tmp_path) / f"s{i}.jsonl", [c.prompt(f"task {i}", i)])
        set_age(path, age)
    # a subagent file of the newest session, older than the others: still joins its session
    sub = Claude(str(repo), session="s0", sidechain=True)
    path = write_jsonl(
        project(tmp_path) / "s0" / "subagents" / "agent-1.jsonl",
        [sub.assistant("m", "r", 1, [tool_use("t", "Grep", pattern="x")], usage(1, 1))],
    )
    set_age(path, 5)
    cc = analyze_sessions(repo, cfg(tmp_path, providers=["claude-code"], since_days=14, max_sessions=2)).providers[
        "claude-code"
    ]
    assert cc.sessions == 2
    assert sorted(cc.goals) == ["task 0", "task 1"]
    assert cc.tools == {"Grep": 1}
    assert cc.skipped == {"too_old": 1, "over_limit": 1}

    later = datetime.now(UTC) + timedelta(days=13.5)  # `now` moves the window: only s0 is recent enough
    assert analyze_sessions(repo, cfg(tmp_path), now=later).goals == ["task 0"]


def test_missing_directories_give_empty_insights(tmp_path: Path, repo: Path) -> None:
    ins = analyze_sessions(repo, cfg(tmp_path))
    assert ins.providers.keys() == {"claude-code", "codex"}
    assert ins == Insights(providers=ins.providers)
    assert ins.sessions == 0 and ins.cost_usd is None and ins.skipped == {}
    assert analyze_sessions(repo, cfg(tmp_path, providers=["codex"])).providers.keys() == {"codex"}


def test_garbage_lines_are_counted_not_fatal(tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_common, "MAX_LINE_BYTES", 4096)
    c = Claude(str(repo))
    good = c.assistant(
        "msg_ok", "req_ok", 1, [tool_use("toolu_ok", "Read", file_path=str(repo / "ok.py"))], usage(2, 3)
    )
    write_jsonl(
        project(tmp_path) / "g.jsonl",
        [
            b'{"type": "user", "message": {"content": "trunc',  # malformed JSON
            b"[1, 2, 3]",
            b'"a string"',
            b"42",
            b"null",  # valid JSON, not objects
            b"",
            b"   ",  # blank lines are nothing
            b"\xff\xfe not json at all",
            orjson.dumps(c.prompt("caf\u00e9 ok", 1)).replace("é".encode(), b"\xe9"),  # bad UTF-8, still used
            orjson.dumps({"type": "brand-new-type", "cwd": str(repo)}),
            orjson.dumps({"cwd": str(repo), "no": "type"}),
            orjson.dumps(c.assistant("msg_bad", "req_bad", 1, 5, "not a dict")),  # type: ignore[arg-type]
            orjson.dumps({**c.prompt("x", 1), "message": "not a dict"}),
            orjson.dumps({**c.prompt("x", 1), "message": {"content": 5}}),
            orjson.dumps({**c.prompt("huge " + "y" * 5000, 1)}),  # over the (lowered) line cap
            orjson.dumps(good),
            orjson.dumps({"type": "file-history-snapshot", "messageId": "m", "snapshot": {}}),
            orjson.dumps(c.prompt("still being written", 2)),
        ],
        newline_at_end=False,
    )
    cc = analyze_sessions(repo, cfg(tmp_path, providers=["claude-code"])).providers["claude-code"]
    assert cc.sessions == 1
    assert cc.tokens.input == 2 and cc.tokens.output == 3
    assert cc.files == {"ok.py": 1}
    assert cc.goals == ["caf\ufffd ok"]  # the unterminated last line is left for the next read
    assert cc.skipped == {
        "malformed_line": 6,
        "invalid_utf8": 1,
        "unknown_type": 2,
        "bad_field": 4,
        "oversized_line": 1,
        "incomplete_line": 1,
    }


def test_codex_garbage(tmp_path: Path, repo: Path) -> None:
    write_jsonl(
        rollout(tmp_path),
        [
            envelope("session_meta", 0, id="g", cwd=str(repo)),
            {"timestamp": ts(1), "type": "event_msg", "payload": "not a dict"},
            {"timestamp": ts(1), "type": "future_kind", "payload": {}},
            envelope("event_msg", 1, type="token_count", info="nope"),
            envelope("event_msg", 1, type="token_count", info={"total_token_usage": "nope"}),
            envelope("event_msg", 1, type="user_message", message=["not", "text"]),
            envelope("event_msg", 1, type="exec_command_end", exit_code="1", command=None),
            envelope("response_item", 1, type="function_call", name=None, arguments="{bad json"),
            envelope("response_item", 1, type="function_call", name="shell", arguments='{"command": 7}'),
            envelope("response_item", 1, type="message", role="user", content=7),
            envelope("response_item", 1, type="local_shell_call", action="x"),
            {"timestamp": 5, "type": "turn_context", "payload": {"cwd": 7}},
            b"\x00\x01garbage",
        ],
    )
    cx = analyze_sessions(repo, cfg(tmp_path, providers=["codex"])).providers["codex"]
    assert cx.sessions == 1
    assert cx.tools == {"shell": 2, "unknown": 1}
    assert cx.skipped == {"bad_field": 4, "unknown_type": 1, "malformed_line": 1}


def test_unreadable_and_odd_files(tmp_path: Path, repo: Path) -> None:
    proj = project(tmp_path)
    proj.mkdir(parents=True)
    (proj / "dangling.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    (proj / "dir.jsonl").mkdir()
    os.mkfifo(proj / "fifo.jsonl")
    (proj / "empty.jsonl").write_bytes(b"")
    (tmp_path / "claude" / "projects" / "top-level.jsonl").write_bytes(b"{}\n")  # not in a project dir
    cc = analyze_sessions(repo, cfg(tmp_path, providers=["claude-code"])).providers["claude-code"]
    assert cc.sessions == 0
    assert cc.skipped == {"unreadable_file": 1, "not_a_file": 1, "no_cwd": 1}


def test_read_objects_reports_io_errors(tmp_path: Path) -> None:
    skipped: Counter[str] = Counter()
    assert list(_common.read_objects(str(tmp_path / "missing.jsonl"), skipped)) == []
    assert skipped == {"unreadable_file": 1}


# ------------------------------------------------------------------------------------ property test

_words = st.sampled_from(
    [
        "type",
        "message",
        "usage",
        "content",
        "cwd",
        "payload",
        "info",
        "id",
        "requestId",
        "tool_use",
        "text",
        "user",
        "assistant",
        "event_msg",
        "response_item",
        "session_meta",
        "token_count",
        "function_call",
        "total_token_usage",
        "last_token_usage",
        "input_tokens",
        "exit_code",
        "exec_command_end",
        "name",
        "arguments",
        "command",
        "call_id",
        "tool_result",
        "is_error",
        "tool_use_id",
        "user_message",
        "role",
        "file_path",
        "input",
        "timestamp",
        "costUSD",
        "/r",
        "/r/x",
        "apply_patch",
        "shell",
        "isMeta",
    ]
)
_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | _words
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_words, inner, max_size=6),
    max_leaves=25,
)
_R = Claude("/r", session="prop")
TEMPLATES: list[dict[str, Any]] = [
    _R.assistant(
        "m",
        "r",
        1,
        [tool_use("t", "Edit", file_path="/r/a.py"), {"type": "text", "text": "x"}],
        usage(1, 2, 3, 4),
        costUSD=0.1,
    ),
    _R.tool_result("t", 2, is_error=True),
    _R.prompt([{"type": "text", "text": "do it"}], 3),
    envelope("session_meta", 0, id="p", cwd="/r"),
    token_count(1, tc(10, 5, 2, 1), tc(10, 5, 2, 1)),
    envelope(
        "response_item",
        1,
        type="function_call",
        name="shell",
        call_id="c",
        arguments='{"command": ["bash", "-lc", "pytest"]}',
    ),
    envelope("response_item", 1, type="custom_tool_call", name="apply_patch", call_id="d", input=PATCH),
    envelope("response_item", 1, type="function_call_output", call_id="c", output="Exit code: 1\n"),
    envelope("event_msg", 1, type="exec_command_end", call_id="c", exit_code=2, command=["make"]),
    envelope("event_msg", 1, type="user_message", message="hello"),
    {"id": "old", "timestamp": "2025-01-01T00:00:00Z", "instructions": ""},
    {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "<environment_context><cwd>/r</cwd></environment_context>"}],
    },
]


def _slots(value: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) in a JSON value, so a mutation can replace any field at any depth."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in items:
        out.append((value, key))
        _slots(child, out)
    return out


def _mutate(args: tuple[int, list[tuple[int, Any]]]) -> bytes:
    template, edits = args
    obj = orjson.loads(orjson.dumps(TEMPLATES[template]))
    for where, new in edits:
        slots = _slots(obj, [])
        if slots:
            container, key = slots[where % len(slots)]
            container[key] = new
    return json.dumps(obj).encode()


_mutated = st.tuples(
    st.integers(0, len(TEMPLATES) - 1), st.lists(st.tuples(st.integers(0, 200), _json), max_size=3)
).map(_mutate)
_line = st.one_of(
    st.binary(max_size=200),
    _json.map(lambda v: json.dumps(v).encode()),  # stdlib: also emits huge ints and NaN
    st.dictionaries(_words, _json, max_size=8).map(lambda v: json.dumps(v).encode()),
    _mutated,
    _mutated,
)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(_line, max_size=30), newline_at_end=st.booleans())
def test_readers_never_raise(lines: list[bytes], newline_at_end: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = b"\n".join(lines) + (b"\n" if newline_at_end else b"")
        path = Path(tmp) / "x.jsonl"
        path.write_bytes(data)
        ws = Workspace("/r")
        for parse in (claude.parse_file, codex.parse_file):
            stats = parse(str(path), 0.0, ws)
            assert all(isinstance(v, int) and v > 0 for v in stats.skipped.values())
            assert all(n >= 0 for u in stats.usage.values() for n in u)
        for name in ("claude/projects/p/s.jsonl", "codex/sessions/2025/01/01/rollout-x.jsonl"):
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / name).write_bytes(data)
        ins = analyze_sessions("/r", Sessions(claude_dir=f"{tmp}/claude", codex_dir=f"{tmp}/codex"))
        assert ins.sessions <= 2
        assert "reader_error" not in ins.skipped
        Insights.model_validate_json(orjson.dumps(ins.model_dump(mode="json")))
