"""Process supervision with small misbehaving stand-ins; every test checks the process table afterwards."""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

from orchestration.agents.process import Verdict, supervise
from tests.helpers import live_with_marker


def script(tmp_path: Path, body: str) -> tuple[list[str], str]:
    marker = f"orch-test-{uuid.uuid4().hex}"
    path = tmp_path / "agent.py"
    path.write_text(body)
    return [sys.executable, str(path), marker], marker


def run(
    argv: list[str],
    tmp_path: Path,
    *,
    deadline_s: float = 20,
    idle_s: float = 20,
    on_line=lambda line: Verdict.CONTINUE,
    cancel=lambda: False,
    **kw,
):  # type: ignore[no-untyped-def]
    return supervise(
        argv,
        cwd=tmp_path,
        env=dict(os.environ),
        deadline=time.time() + deadline_s,
        idle_timeout_s=idle_s,
        on_line=on_line,
        should_cancel=cancel,
        kill_grace_s=1.0,
        stderr_path=tmp_path / "stderr.log",
        **kw,
    )


def test_silent_sleeper_is_stopped_as_idle(tmp_path: Path) -> None:
    argv, marker = script(tmp_path, "import time\ntime.sleep(600)\n")
    t0 = time.monotonic()
    outcome = run(argv, tmp_path, idle_s=1.5)
    assert outcome.stop_reason == "idle_timeout"
    assert time.monotonic() - t0 < 6
    assert live_with_marker(marker) == []


def test_deadline_kills_group_including_term_ignoring_grandchild(tmp_path: Path) -> None:
    body = (
        "import os, signal, subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', "
        "'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)', sys.argv[1]])\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "while True:\n    print('{}', flush=True); time.sleep(0.2)\n"
    )
    argv, marker = script(tmp_path, body)
    t0 = time.monotonic()
    outcome = run(argv, tmp_path, deadline_s=2)
    assert outcome.stop_reason == "deadline"
    assert time.monotonic() - t0 < 2 + 1.0 + 3
    assert live_with_marker(marker) == []


def test_final_message_then_no_exit(tmp_path: Path) -> None:
    argv, marker = script(tmp_path, "import time\nprint('FINAL', flush=True)\ntime.sleep(600)\n")
    outcome = run(
        argv,
        tmp_path,
        on_line=lambda line: Verdict.FINAL if b"FINAL" in line else Verdict.CONTINUE,
        after_final_grace_s=0.5,
    )
    assert outcome.stop_reason == "no_exit_after_final"
    assert live_with_marker(marker) == []


def test_cancel_stops_within_seconds(tmp_path: Path) -> None:
    argv, marker = script(tmp_path, "import time\nwhile True:\n    print('x', flush=True); time.sleep(0.1)\n")
    t_cancel = time.monotonic() + 1.0
    outcome = run(argv, tmp_path, cancel=lambda: time.monotonic() > t_cancel, cancel_poll_s=0.2)
    assert outcome.stop_reason == "cancelled"
    assert outcome.lines > 0
    assert live_with_marker(marker) == []


def test_cost_verdict_stops(tmp_path: Path) -> None:
    argv, marker = script(tmp_path, "import time\nwhile True:\n    print('usage', flush=True); time.sleep(0.05)\n")
    seen = []

    def on_line(line: bytes) -> str:
        seen.append(line)
        return Verdict.STOP_COST if len(seen) >= 3 else Verdict.CONTINUE

    outcome = run(argv, tmp_path, on_line=on_line)
    assert outcome.stop_reason == "cost_limit"
    assert live_with_marker(marker) == []


def test_garbage_and_huge_lines_and_crash(tmp_path: Path) -> None:
    body = (
        "import sys\n"
        "sys.stdout.buffer.write(b'\\xff\\xfe not json\\n' + b'x' * (20 * 1024 * 1024) + b'\\n{\"trunc')\n"
        "sys.stdout.flush()\nsys.stderr.write('boom\\n')\nsys.exit(3)\n"
    )
    argv, marker = script(tmp_path, body)
    lines: list[bytes] = []
    outcome = run(argv, tmp_path, on_line=lambda line: lines.append(line) or Verdict.CONTINUE)
    assert outcome.stop_reason is None
    assert outcome.exit_code == 3
    assert "boom" in outcome.stderr_tail
    assert len(lines) == 3 and all(len(x) <= 16 * 1024 * 1024 for x in lines)
    assert live_with_marker(marker) == []


def test_missing_binary_is_reported_not_raised(tmp_path: Path) -> None:
    outcome = run([str(tmp_path / "nope")], tmp_path)
    assert outcome.stop_reason == "spawn_failed"
    assert outcome.spawn_error


def test_exited_agent_leaves_no_children(tmp_path: Path) -> None:
    body = (
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', sys.argv[1]])\n"
        "print('done', flush=True)\n"
    )
    argv, marker = script(tmp_path, body)
    outcome = run(argv, tmp_path)
    assert outcome.exit_code == 0 and outcome.stop_reason is None
    assert live_with_marker(marker) == []
