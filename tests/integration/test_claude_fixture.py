"""The real Claude Code CLI (npm @anthropic-ai/claude-code, pinned in package.json) against the scripted,
loopback-only Anthropic API in tests/fixtures/anthropic_server.py.  No network beyond 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.anthropic_server import ScriptedAnthropic, claude_env, write_file_script

ROOT = Path(__file__).resolve().parents[2]
CLAUDE = ROOT / "node_modules" / ".bin" / "claude"
CONTENT = "hello from the scripted model\n"


def _claude_binary() -> str:
    if not CLAUDE.exists():
        pytest.fail(
            f"{CLAUDE} is missing: run `npm ci` in {ROOT} to install the pinned agent CLIs "
            "(package.json / package-lock.json)",
            pytrace=False,
        )
    return str(CLAUDE)


@pytest.fixture
def short_tmpdir() -> Iterator[Path]:
    """A short TMPDIR for claude: it puts a Unix socket under $TMPDIR/cc-socks/ (sun_path <= 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="cc-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.mark.timeout(120)
def test_real_claude_writes_file_against_scripted_api(tmp_path: Path, short_tmpdir: Path) -> None:
    claude = _claude_binary()
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)  # noqa: S603 - fixed argv, no shell
    home = tmp_path / "home"
    home.mkdir()
    target = repo / "hello.txt"

    with ScriptedAnthropic(script=write_file_script(target, CONTENT)) as srv:
        started = time.monotonic()
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [
                claude,
                "-p",
                "create hello.txt",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-mode",
                "acceptEdits",
                "--max-turns",
                "5",
            ],
            cwd=repo,
            env=claude_env(srv.base_url, home, tmpdir=short_tmpdir),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=90,
        )
        elapsed = time.monotonic() - started
        main_requests = srv.main_requests
        calls = list(srv.calls)

    assert proc.returncode == 0, f"claude exited {proc.returncode}\nstderr:\n{proc.stderr}\nstdout:\n{proc.stdout}"
    assert target.read_text() == CONTENT

    events = _events(proc.stdout)
    kinds = [(e["type"], e.get("subtype")) for e in events]
    assert kinds[0] == ("system", "init"), kinds
    session_id = events[0]["session_id"]
    tool_uses = [
        block
        for e in events
        if e["type"] == "assistant"
        for block in e["message"]["content"]
        if block["type"] == "tool_use"
    ]
    assert [(b["name"], b["input"]["file_path"]) for b in tool_uses] == [("Write", str(target))]
    tool_results = [
        block
        for e in events
        if e["type"] == "user"
        for block in e["message"]["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]
    assert len(tool_results) == 1 and not tool_results[0].get("is_error")

    result = events[-1]
    assert result["type"] == "result", kinds
    assert result["subtype"] == "success"
    assert result["is_error"] is False
    assert result["session_id"] == session_id
    assert result["num_turns"] == 2
    assert result["result"] == "Done."
    assert result["total_cost_usd"] > 0  # claude priced our usage numbers
    assert result["usage"]["cache_read_input_tokens"] > 0

    # Exactly the two scripted main-loop turns, each a streamed request carrying the built-in tools;
    # nothing else hit the server (no side requests, no probes) with claude_env's settings.
    assert len(main_requests) == 2
    assert all(r["stream"] is True for r in main_requests)
    assert [c.kind for c in calls] == ["main", "main"]

    transcripts = list((home / ".claude" / "projects").glob(f"*/{session_id}.jsonl"))
    assert len(transcripts) == 1, list((home / ".claude").rglob("*.jsonl"))
    assert elapsed < 60, f"claude took {elapsed:.1f}s"


@pytest.mark.timeout(30)
def test_fixture_protocol_without_claude() -> None:
    """The non-streaming, count_tokens, probe and hang paths (claude rarely exercises them)."""
    tools = [{"name": "Write", "input_schema": {"type": "object"}}]
    with ScriptedAnthropic(script=[{"tool": "Write", "input": {"file_path": "/x", "content": "y"}}]) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)

        def post(path: str, body: dict[str, Any]) -> tuple[int, str, bytes]:
            conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type") or "", resp.read()

        # A side request (no tools) gets a short text and does not consume the script.
        status, _, raw = post("/v1/messages", {"model": "m", "max_tokens": 1, "messages": []})
        side = json.loads(raw)
        assert status == 200 and side["content"] == [{"type": "text", "text": "OK"}]
        assert side["stop_reason"] == "end_turn" and side["usage"]["output_tokens"] >= 1

        # The first main-loop request, streamed over the same keep-alive connection.
        status, ctype, raw = post("/v1/messages?beta=true", {"model": "m", "stream": True, "tools": tools})
        assert status == 200 and ctype.startswith("text/event-stream")
        names = [line[len("event: ") :] for line in raw.decode().splitlines() if line.startswith("event: ")]
        assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
        data = [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]
        partial = "".join(
            d["delta"]["partial_json"] for d in data if d.get("delta", {}).get("type") == "input_json_delta"
        )
        assert json.loads(partial) == {"file_path": "/x", "content": "y"}
        assert data[-2]["delta"]["stop_reason"] == "tool_use"

        # Script exhausted: final text.
        status, _, raw = post("/v1/messages", {"model": "m", "tools": tools})
        assert json.loads(raw)["content"] == [{"type": "text", "text": "Done."}]

        status, _, raw = post("/v1/messages/count_tokens", {"messages": [{"role": "user", "content": "hi"}]})
        assert status == 200 and json.loads(raw)["input_tokens"] >= 1
        conn.request("HEAD", "/api/hello")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 404
        conn.close()
        assert [c.kind for c in srv.calls] == ["side", "main", "main", "count_tokens", "other"]
        assert srv.turns_used == 1 and len(srv.requests) == 3

    # hang=True: the request is accepted and never answered until the server stops.
    with ScriptedAnthropic(hang=True) as srv:
        outcome: list[BaseException | int] = []

        def hang_client() -> None:
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=20)
            try:
                c.request("POST", "/v1/messages", body=json.dumps({"tools": tools, "stream": True}))
                outcome.append(c.getresponse().status)
            except (OSError, http.client.HTTPException) as exc:
                outcome.append(exc)
            finally:
                c.close()

        client = threading.Thread(target=hang_client)
        client.start()
        deadline = time.monotonic() + 5
        while not srv.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        assert srv.calls and not outcome  # received, still unanswered
    client.join(timeout=5)  # leaving the context dropped the connection
    assert not client.is_alive() and outcome and not isinstance(outcome[0], int)
