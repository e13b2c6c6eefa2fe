"""`orchestrate watch` follows cycles live until interrupted; it, `watch <cycle>` and `status --watch` end at
once on Ctrl-C or SIGTERM, even when started with SIGINT ignored (as a non-interactive shell starts a
background job)."""

from __future__ import annotations

import contextlib
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis

from orchestration.hub import RedisHub
from orchestration.keys import Keys
from tests.helpers import ROOT, TRACEBACK

pytestmark = pytest.mark.integration

STOP_S = 5.0  # how long a follow command may take to end after the signal


@contextlib.contextmanager
def _started(args: list[str], env: dict[str, str], sigint_ignored: bool) -> Iterator[subprocess.Popen[str]]:
    """The CLI with SIGINT either at its default or ignored, whatever this test process has it at; killed
    at the end if the test left it running."""
    disposition = signal.SIG_IGN if sigint_ignored else signal.SIG_DFL
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "orchestration.cli", *args],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, disposition),
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _stop(proc: subprocess.Popen[str], sig: signal.Signals) -> tuple[str, str]:
    """Sends `sig` and returns the output once the process has ended; fails if it is still running after
    STOP_S seconds."""
    proc.send_signal(sig)
    t0 = time.monotonic()
    try:
        out, err = proc.communicate(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"still running {STOP_S:.0f} s after {sig.name}")
    assert time.monotonic() - t0 < STOP_S
    return out, err


def _hub(env: dict[str, str]) -> RedisHub:
    return RedisHub(redis.Redis.from_url(env["ORCH_REDIS_URL"]), env["ORCH_KEY_PREFIX"])


STOPS = [
    pytest.param(signal.SIGINT, False, id="sigint"),
    pytest.param(signal.SIGINT, True, id="sigint-inherited-ignored"),
    pytest.param(signal.SIGTERM, False, id="sigterm"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("sig", "sigint_ignored"), STOPS)
def test_watch_all_follows_every_cycle(orch_env: dict[str, str], sig: signal.Signals, sigint_ignored: bool) -> None:
    with _started(["watch"], orch_env, sigint_ignored) as proc:
        hub = _hub(orch_env)
        channel = Keys(orch_env["ORCH_KEY_PREFIX"]).updates
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # wait until the watcher has subscribed
            if hub.redis.pubsub_numsub(channel)[0][1] >= 1:
                break
            time.sleep(0.1)
        else:
            pytest.fail("watch never subscribed")
        hub.emit("cycle-a", "ws-a", "start", "cycle.started", {})
        hub.emit("cycle-b", "ws-b", "execute", "agent.message", {"text": "hello from b"})
        hub.emit("cycle-a", "ws-a", "finish", "cycle.finished", {"status": "succeeded"})
        time.sleep(1.5)
        out, err = _stop(proc, sig)
    assert proc.returncode == 0, err
    lines = [line for line in out.splitlines() if line.strip()]
    assert [line.split()[0] for line in lines] == ["cycle-a", "cycle-b", "cycle-a"]
    assert "hello from b" in lines[1] and "cycle.finished" in lines[2]
    assert TRACEBACK not in out + err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_watch_one_cycle_stops_following(orch_env: dict[str, str], sig: signal.Signals) -> None:
    hub = _hub(orch_env)
    hub.emit("cycle-f", "ws-f", "start", "cycle.started", {})
    with _started(["watch", "cycle-f"], orch_env, sigint_ignored=True) as proc:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "watch printed nothing"
        assert "cycle.started" in proc.stdout.readline()  # replayed: it is following now
        _out, err = _stop(proc, sig)
    assert proc.returncode == 130, err
    assert "stopped following; the cycle goes on" in err
    assert TRACEBACK not in err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_status_watch_stops(orch_env: dict[str, str], sig: signal.Signals) -> None:
    hub = _hub(orch_env)
    before = {c["id"] for c in hub.redis.client_list()}
    with _started(["status", "--watch", "--every", "0.2"], orch_env, sigint_ignored=True) as proc:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # wait until it has connected to Redis
            if {c["id"] for c in hub.redis.client_list()} - before:
                break
            time.sleep(0.1)
        else:
            pytest.fail("status --watch never connected")
        time.sleep(1.0)  # a few refreshes
        out, err = _stop(proc, sig)
    assert proc.returncode == 0, err
    assert "recent cycles" in out
    assert TRACEBACK not in out + err
