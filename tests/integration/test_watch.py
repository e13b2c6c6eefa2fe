"""`orchestrate watch` with no cycle id follows every cycle live until interrupted."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import redis

from orchestration.hub import RedisHub
from orchestration.keys import Keys
from tests.helpers import ROOT, TRACEBACK

pytestmark = pytest.mark.integration


@pytest.mark.timeout(60)
def test_watch_all_follows_every_cycle(orch_env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestration.cli", "watch"],
        env=orch_env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        hub = RedisHub(redis.Redis.from_url(orch_env["ORCH_REDIS_URL"]), orch_env["ORCH_KEY_PREFIX"])
        channel = Keys(orch_env["ORCH_KEY_PREFIX"]).updates
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # wait until the watcher has subscribed
            if hub.redis.pubsub_numsub(channel)[0][1] >= 1:
                break
            time.sleep(0.1)
        hub.emit("cycle-a", "ws-a", "start", "cycle.started", {})
        hub.emit("cycle-b", "ws-b", "execute", "agent.message", {"text": "hello from b"})
        hub.emit("cycle-a", "ws-a", "finish", "cycle.finished", {"status": "succeeded"})
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = [line for line in out.splitlines() if line.strip()]
    assert [line.split()[0] for line in lines] == ["cycle-a", "cycle-b", "cycle-a"]
    assert "hello from b" in lines[1] and "cycle.finished" in lines[2]
    assert TRACEBACK not in out + err
