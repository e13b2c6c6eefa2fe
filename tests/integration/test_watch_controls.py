"""`orchestrate watch` on a real Redis prints agent text without its terminal control sequences, and masks
the secrets it knows even in events written by a process that did not know them."""

from __future__ import annotations

import uuid

import pytest
import redis

from orchestration.hub import RedisHub
from tests.helpers import orchestrate

pytestmark = pytest.mark.integration

WATCHER_SECRET = "watcher-Only-secret-5150"  # in the watcher's environment, not the emitter's


@pytest.mark.timeout(60)
def test_watch_strips_control_sequences_and_masks_secrets(orch_env: dict[str, str]) -> None:
    hub = RedisHub(redis.Redis.from_url(orch_env["ORCH_REDIS_URL"]), orch_env["ORCH_KEY_PREFIX"])
    cycle_id = f"c-{uuid.uuid4().hex[:8]}"
    hostile = (
        "visible\x1b]52;c;ZXZpbCBjbGlwYm9hcmQ=\x07 text\x1b[2J\x1b[H\x1b[31m red\x1b[0m\rover"
        "\x9b2J \x1b]8;;http://evil.example/\x1b\\link\x1b]8;;\x1b\\ " + WATCHER_SECRET
    )
    hub.emit(cycle_id, "ws", "start", "cycle.started", {})
    hub.emit(cycle_id, "ws", "execute", "agent.message", {"text": hostile})
    hub.emit(cycle_id, "ws", "execute", "agent.command", {"command": "echo hi\x1b]0;title\x07\nfake line"})
    hub.emit(cycle_id, "ws", "finish", "cycle.finished", {"status": "succeeded"})
    assert "\x1b]52" in hub.replay(cycle_id)[1][1].data["text"]  # the bytes really are in Redis

    proc = orchestrate(["watch", cycle_id], {**orch_env, "WATCH_TEST_TOKEN": WATCHER_SECRET}, timeout=45)
    output = proc.stdout + proc.stderr
    for control in ("\x1b", "\x9b", "\r", "\x07"):
        assert control not in output, repr(output)
    assert WATCHER_SECRET not in output
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert [line.split()[3] for line in lines] == ["cycle.started", "agent.message", "agent.command", "cycle.finished"]
    assert "visible text red" in lines[1] and "link" in lines[1] and "***" in lines[1]
    assert "echo hi fake line" in lines[2]
