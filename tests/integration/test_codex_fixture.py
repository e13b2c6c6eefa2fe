"""The real Codex CLI (npm @openai/codex, pinned in package.json) against the scripted, loopback-only OpenAI
Responses API in tests/fixtures/openai_server.py.  No network beyond 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.ccusage import ccusage_sessions
from tests.fixtures.openai_server import (
    ScriptedOpenAI,
    add_file_patch,
    codex_env,
    patch_turn,
    shell_turn,
    text_turn,
    write_codex_config,
)

ROOT = Path(__file__).resolve().parents[2]
CODEX = ROOT / "node_modules" / ".bin" / "codex"
CONTENT = "hello from the scripted model\n"


def _codex_binary() -> str:
    if not CODEX.exists():
        pytest.fail(
            f"{CODEX} is missing: run `npm ci` in {ROOT} to install the pinned agent CLIs "
            "(package.json / package-lock.json)",
            pytrace=False,
        )
    return str(CODEX)


def _run_codex(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, str]:
    """Run codex with stdin closed in its own process group and kill the whole group on timeout:
    killing only the node launcher (bin/codex.js) leaves the native codex process running."""
    proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"codex did not finish in {timeout}s\nstderr:\n{err}\nstdout:\n{out}", pytrace=False)
    return proc.returncode, out, err


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _git_repo(path: Path) -> Path:
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)  # noqa: S603 - fixed argv, no shell
    return path


@pytest.mark.timeout(120)
def test_real_codex_writes_file_against_scripted_api(tmp_path: Path) -> None:
    codex = _codex_binary()
    repo = _git_repo(tmp_path / "repo")
    codex_home = tmp_path / "codex_home"
    target = repo / "hello.txt"
    script = [
        shell_turn("printf 'shell was here\\n' > shell.txt && git status --short", text="Writing files."),
        patch_turn(add_file_patch("hello.txt", CONTENT)),
        text_turn("Created hello.txt."),
    ]

    with ScriptedOpenAI(script=script) as srv:
        write_codex_config(codex_home, srv.base_url)
        argv = [
            codex,
            "exec",
            "--json",
            "--sandbox",
            "workspace-write",
            "-C",
            str(repo),
            "--skip-git-repo-check",
            "create hello.txt",
        ]
        started = time.monotonic()
        returncode, stdout, stderr = _run_codex(argv, codex_env(srv.base_url, codex_home), timeout=90)
        elapsed = time.monotonic() - started
        main_requests = srv.main_requests
        calls = list(srv.calls)
        usages = list(srv.usages)

    assert returncode == 0, f"codex exited {returncode}\nstderr:\n{stderr}\nstdout:\n{stdout}"
    assert target.read_text() == CONTENT
    assert (repo / "shell.txt").read_text() == "shell was here\n"

    events = _events(stdout)
    types = [e["type"] for e in events]
    assert types[:2] == ["thread.started", "turn.started"], types
    assert types[-1] == "turn.completed", types
    assert "error" not in types and "turn.failed" not in types, types
    thread_id = events[0]["thread_id"]
    items = [e["item"] for e in events if e["type"] == "item.completed"]
    assert [i["type"] for i in items] == ["agent_message", "command_execution", "file_change", "agent_message"]
    command = items[1]
    assert command["exit_code"] == 0 and command["status"] == "completed"
    assert "?? shell.txt" in command["aggregated_output"]
    assert items[2]["changes"] == [{"path": str(target), "kind": "add"}]
    assert items[3]["text"] == "Created hello.txt."
    assert any(e["type"] == "item.started" for e in events)

    # turn.completed's usage is the sum over the turn's responses (cached tokens are part of input).
    usage = events[-1]["usage"]
    assert usage["input_tokens"] == sum(u["input_tokens"] for u in usages)
    assert usage["cached_input_tokens"] == sum(u["input_tokens_details"]["cached_tokens"] for u in usages)
    assert usage["output_tokens"] == sum(u["output_tokens"] for u in usages)
    assert usage["cached_input_tokens"] > 0

    # One streamed request per scripted turn, each offering the classic tools; nothing else was requested.
    assert len(main_requests) == 3
    assert [c.kind for c in calls] == ["main", "main", "main"]
    assert all(r["stream"] is True and r["model"] == "gpt-5.5" for r in main_requests)
    assert all(c.headers.get("authorization", "").startswith("Bearer sk-scripted-") for c in calls)

    # The rollout: $CODEX_HOME/sessions/YYYY/MM/DD/rollout-<local time>-<thread id>.jsonl
    rollouts = list((codex_home / "sessions").glob(f"*/*/*/rollout-*-{thread_id}.jsonl"))
    assert len(rollouts) == 1, list(codex_home.rglob("*.jsonl"))
    lines = [json.loads(line) for line in rollouts[0].read_text().splitlines()]
    assert lines[0]["type"] == "session_meta" and lines[0]["payload"]["id"] == thread_id
    assert lines[0]["payload"]["cwd"] == str(repo)
    token_counts = [ln for ln in lines if ln["type"] == "event_msg" and ln["payload"]["type"] == "token_count"]
    assert token_counts[-1]["payload"]["info"]["total_token_usage"]["input_tokens"] == usage["input_tokens"]

    # ccusage (the reference for token accounting) reads the same totals from the rollout.
    key = str(rollouts[0].relative_to(codex_home / "sessions").with_suffix(""))
    assert ccusage_sessions("codex", codex_home) == {
        key: {
            "input": usage["input_tokens"] - usage["cached_input_tokens"],
            "output": usage["output_tokens"],
            "cache_read": usage["cached_input_tokens"],
            "cache_write": 0,
        }
    }
    assert elapsed < 60, f"codex took {elapsed:.1f}s"


@pytest.mark.timeout(30)
def test_fixture_protocol_without_codex() -> None:
    """Stream shape, side requests, errors, hang and stall, straight over HTTP."""
    tools = [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}}]
    script: list[dict[str, Any]] = [
        {"text": "Let me.", "shell": "echo hi", "reasoning": "think", "reasoning_tokens": 3},
        {"patch": add_file_patch("x.txt", "x\n"), "usage": {"input_tokens": 100, "cached_tokens": 40}},
        {"error": 429},
    ]
    with ScriptedOpenAI(script=script) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)

        def post(body: dict[str, Any]) -> tuple[int, str, bytes]:
            conn.request("POST", "/v1/responses", body=json.dumps(body), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type") or "", resp.read()

        def sse(raw: bytes) -> list[dict[str, Any]]:
            return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]

        # A side request (no tools) gets a short message and does not consume the script.
        status, _, raw = post({"model": "m", "input": []})
        assert status == 200 and json.loads(raw)["output"][0]["content"][0]["text"] == "OK"

        status, ctype, raw = post({"model": "m", "stream": True, "tools": tools, "input": []})
        assert status == 200 and ctype.startswith("text/event-stream")
        events = sse(raw)
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
        done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
        assert [i["type"] for i in done] == ["reasoning", "message", "function_call"]
        assert json.loads(done[2]["arguments"]) == {"cmd": "echo hi"}
        args = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
        assert args == done[2]["arguments"]
        usage = events[-1]["response"]["usage"]
        assert usage["output_tokens_details"]["reasoning_tokens"] == 3
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]

        # Tools may also arrive in an additional_tools input item (codex's code mode); forced usage numbers.
        body = {
            "stream": True,
            "input": [{"type": "additional_tools", "tools": [{"type": "namespace", "tools": tools}]}],
        }
        status, _, raw = post(body)
        events = sse(raw)
        call = next(e["item"] for e in events if e["type"] == "response.output_item.done")
        assert call["type"] == "custom_tool_call" and call["name"] == "apply_patch"
        assert call["input"] == "*** Begin Patch\n*** Add File: x.txt\n+x\n*** End Patch\n"
        usage = events[-1]["response"]["usage"]
        assert (usage["input_tokens"], usage["input_tokens_details"]["cached_tokens"]) == (100, 40)

        status, _, raw = post({"stream": True, "tools": tools})
        assert status == 429 and json.loads(raw)["error"]["type"] == "rate_limit_exceeded"

        # Script exhausted: a final message.
        status, _, raw = post({"stream": True, "tools": tools})
        assert [i["content"][0]["text"] for i in sse(raw)[-1]["response"]["output"]] == ["Done."]
        conn.request("GET", "/v1/models")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 404
        conn.close()
        assert [c.kind for c in srv.calls] == ["side", "main", "main", "main", "main", "other"]
        assert srv.turns_used == 3 and len(srv.requests) == 5

    # hang=True: accepted, never answered; stall: stream started, then silence.  Both end when the server stops.
    for server, expect_status in ((ScriptedOpenAI(hang=True), None), (ScriptedOpenAI(script=[{"stall": True}]), 200)):
        with server as srv:
            outcome: list[Any] = []

            def client(port: int = srv.port, sink: list[Any] = outcome) -> None:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
                try:
                    c.request("POST", "/v1/responses", body=json.dumps({"tools": tools, "stream": True}))
                    resp = c.getresponse()
                    sink.append(resp.status)
                    sink.append(resp.read())
                except (OSError, http.client.HTTPException) as exc:
                    sink.append(exc)
                finally:
                    c.close()

            thread = threading.Thread(target=client)
            thread.start()
            deadline = time.monotonic() + 5
            while (not srv.calls or (expect_status and not outcome)) and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)
            assert srv.calls
            if expect_status is None:
                assert not outcome  # received, still unanswered
            else:
                assert outcome[:1] == [expect_status] and len(outcome) == 1  # headers sent, body still open
        thread.join(timeout=5)
        assert not thread.is_alive()
