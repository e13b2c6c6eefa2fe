"""Helpers of the web monitor's tests: `orchestrate serve` as a real subprocess, an SSE reader, a workspace
whose stand-in agent runs until it is cancelled."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import ROOT, free_port, make_repo, orchestrate_process

FAKE_CLAUDE = ROOT / "tests" / "fixtures" / "fake_claude.py"
TOKEN = "serve-test-token-0123456789abcdef"


@contextlib.contextmanager
def serve_process(env: dict[str, str], log: Path, *extra: str) -> Iterator[str]:
    """`orchestrate serve` on a free loopback port, stopped (SIGTERM, then its group) at the end; yields its URL."""
    port = free_port()
    with orchestrate_process(["serve", "--port", str(port), *extra], env, log, ready=b"Uvicorn running on"):
        yield f"http://127.0.0.1:{port}"


def workspace(tmp: Path, config_dir: Path, mode: str = "slow", workspace_id: str = "demo") -> Path:
    """A repository with a local remote and its config in the config directory; the stand-in agent's mode
    `slow` writes an event every second until its cycle is cancelled."""
    repo, _bare = make_repo(tmp, workspace_id)
    claude = {"command": str(FAKE_CLAUDE), "env": {"FAKE_CLAUDE_MODE": mode}}
    cfg = {
        "id": workspace_id,
        "workspace": {"repo": str(repo)},
        "budget": {"cycle_s": 300, "idle_timeout_s": 120, "max_cost_usd": 2.0},
        "sessions": {"claude_dir": str(tmp / "no-claude"), "codex_dir": str(tmp / "no-codex")},
        "goals": ["Write orchestrated.txt"],
        "agents": {"allow": ["claude-code"], "claude-code": claude},
    }
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / f"{workspace_id}.json"
    path.write_text(json.dumps(cfg))
    return path


@dataclass
class SSE:
    """One message of a stream."""

    id: str | None = None
    event: str | None = None
    data: str = ""
    comments: list[str] = field(default_factory=list)

    @property
    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.data)
        return parsed


def read_sse(response: httpx.Response) -> Iterator[SSE]:
    """The messages of an SSE response as they arrive (pings skipped), until the server ends it."""
    current = SSE()
    data: list[str] = []
    for line in response.iter_lines():
        if line == "":
            if data or current.event:
                current.data = "\n".join(data)
                yield current
            current, data = SSE(), []
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "":
            current.comments.append(value)
        elif name == "data":
            data.append(value)
        elif name == "id":
            current.id = value
        elif name == "event":
            current.event = value


def collect(url: str, headers: dict[str, str], timeout_s: float = 60.0) -> tuple[int, list[dict[str, Any]]]:
    """Every event of a stream until it ends (or `timeout_s`): the status and the events, checked to carry
    their seq as the SSE id."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    with (
        httpx.Client(timeout=httpx.Timeout(10.0, read=timeout_s)) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        if response.status_code != 200:
            return response.status_code, events
        for message in read_sse(response):
            event = message.json
            assert message.id == str(event["seq"]), (message.id, event["seq"])
            events.append(event)
            if time.monotonic() > deadline:
                break
    return 200, events
