"""Supervision of one agent process: its own process group, a line reader, and every way to stop it.

The runner is the first line of defence (deadline, idle, cost, cancel); Celery's time limits are the
backstop. Whatever ends the run, the whole process group is killed so nothing outlives the cycle.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from orchestration.models import StopReason

if TYPE_CHECKING:
    import psutil

KILL_GRACE_S = 5.0
# The SIGKILL goes out this long before the grace ends, so that the group is gone (the kernel has ended it,
# on a busy machine too) by the end of the grace: the grace is a bound, not the moment of the kill.
KILL_SETTLE_S = 0.2
EXIT_DRAIN_S = 2.0
AFTER_FINAL_GRACE_S = 10.0
MAX_LINE_BYTES = 16 * 1024 * 1024
STDERR_TAIL_BYTES = 8192


class Verdict(StrEnum):
    """What a line handler tells the supervisor after each line."""

    CONTINUE = "continue"
    FINAL = "final"  # the agent said its last word; it should exit on its own shortly
    STOP_COST = "cost_limit"  # the streamed usage reached the cost cap


@dataclass(frozen=True)
class RunAs:
    """The unprivileged OS user an agent runs as (ORCH_AGENT_USER): the worker, as root, drops to it."""

    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def lookup(cls, name: str) -> RunAs:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ValueError(f"ORCH_AGENT_USER: no OS user {name!r} on this host") from None
        if entry.pw_uid == 0:
            raise ValueError(f"ORCH_AGENT_USER: {name!r} is root; name an unprivileged user")
        if os.geteuid() != 0:
            raise ValueError(f"ORCH_AGENT_USER={name} needs the worker to run as root (to drop privileges)")
        return cls(name=name, uid=entry.pw_uid, gid=entry.pw_gid, home=entry.pw_dir)


@dataclass
class ProcessOutcome:
    exit_code: int | None
    stop_reason: StopReason | None  # None when the process ended by itself
    pid: int | None = None
    stderr_tail: str = ""
    lines: int = 0
    spawn_error: str | None = None


def kill_group(pgid: int, grace_s: float = KILL_GRACE_S) -> bool:
    """TERM the group, then KILL whatever is left, so that it is gone within the grace period. True if
    anything was alive."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    # The SIGKILL goes out at its time, not at the next poll after it: the waits shrink to the time left.
    # Polls start short (a polite agent is gone within milliseconds) and grow to 50 ms, since each one lists
    # the machine's processes.
    end = time.monotonic() + max(0.0, grace_s - KILL_SETTLE_S)
    pause = 0.005
    while (left := end - time.monotonic()) > 0:
        if not group_alive(pgid):
            return True
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    # Returning means gone: wait (briefly) for the kernel to end what SIGKILL hit.
    settle = time.monotonic() + 1.0
    while group_alive(pgid) and time.monotonic() < settle:
        time.sleep(0.005)
    return True


# Clock ticks per second: a process's start time is kept as ticks since boot, which no change of the system
# clock moves (the epoch time psutil reports does move with it).
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _start_ticks(proc: psutil.Process) -> int:
    """When the process started, in clock ticks since boot."""
    import psutil

    for _ in range(3):
        boot: float = psutil.boot_time()
        created: float = proc.create_time()
        if psutil.boot_time() == boot:  # the boot time did not move (a clock step) between the two reads
            break
    return round((created - boot) * _CLOCK_TICKS)


_own_identity: tuple[int, str] | None = None  # this process's, asked at every stage: (pid, identity)


def process_identity(pid: int | None = None) -> str:
    """`pid:starttime` — tells a live process from a later one that reused its pid."""
    global _own_identity
    import psutil  # process inspection is loaded by the code that needs it, not by every import

    if pid is None:
        me = os.getpid()  # a forked child has a pid of its own: the cache is by pid
        if _own_identity is None or _own_identity[0] != me:
            _own_identity = (me, process_identity(me))
        return _own_identity[1]
    try:
        return f"{pid}:{_start_ticks(psutil.Process(pid))}"
    except psutil.Error:
        return f"{pid}:?"


def identity_alive(identity: str) -> bool:
    """True while that very process runs; a zombie (killed, not yet reaped by its new parent) is dead."""
    import psutil

    pid_text, _, start = identity.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    try:
        proc = psutil.Process(pid)
        return str(_start_ticks(proc)) == start and proc.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    import psutil

    # A group whose members are all zombies still answers signal 0; look for a live member.
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return True
        except (OSError, psutil.Error):  # gone meanwhile
            continue
    return False


def supervise(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    deadline: float,
    idle_timeout_s: float,
    on_line: Callable[[bytes], Verdict],
    should_cancel: Callable[[], bool],
    on_started: Callable[[int], None] | None = None,
    on_tick: Callable[[], None] | None = None,
    poll: Callable[[], Verdict | None] | None = None,
    tick_s: float = 15.0,
    cancel_poll_s: float = 1.0,
    after_final_grace_s: float = AFTER_FINAL_GRACE_S,
    kill_grace_s: float = KILL_GRACE_S,
    stderr_path: Path | None = None,
    stdout_path: Path | None = None,
    run_as: RunAs | None = None,
) -> ProcessOutcome:
    """Runs argv with stdin closed in a new session and feeds each stdout line to `on_line`.

    `deadline` is a unix time. Stops: deadline, idle (no stdout line for idle_timeout_s), cost (a handler
    verdict), cancel, and a process that keeps running after its final message. With `run_as`, the
    process runs as that user with no supplementary groups. With `stdout_path`, stdout goes to that file
    instead (no lines are read: a command, not an agent; only the deadline and cancel stop it).
    """
    stderr_file = stderr_path.open("w+b") if stderr_path else None
    stdout_file = stdout_path.open("w+b") if stdout_path else None
    try:
        proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
            argv,
            cwd=str(cwd),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout_file if stdout_file else subprocess.PIPE,
            stderr=stderr_file if stderr_file else subprocess.DEVNULL,
            start_new_session=True,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
            umask=0o022 if run_as else -1,
        )
    except OSError as exc:
        for f in (stderr_file, stdout_file):
            if f:
                f.close()
        return ProcessOutcome(exit_code=None, stop_reason=StopReason.SPAWN_FAILED, spawn_error=str(exc))

    pgid = proc.pid  # start_new_session makes the child the leader of a new group
    guard = start_guard(pgid)
    if on_started is not None:
        try:
            on_started(proc.pid)
        except Exception:
            kill_group(pgid, 0.5)
            proc.wait()
            stop_guard(guard)
            raise
    lines: queue.Queue[bytes | None] = queue.Queue(maxsize=10_000)
    if stdout_file is None:
        assert proc.stdout is not None
        reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
    else:
        stdout_file.close()  # the child has its own copy
        reader = threading.Thread(target=lines.put, args=(None,), daemon=True)
    reader.start()

    stop_reason: StopReason | None = None
    n_lines = 0
    last_event = time.monotonic()
    final_at: float | None = None
    next_cancel_poll = 0.0
    next_tick = time.monotonic() + tick_s
    eof = False
    exited_at: float | None = None
    try:
        while True:
            now_m = time.monotonic()
            if time.time() >= deadline:
                stop_reason = StopReason.DEADLINE
                break
            if not eof and final_at is None and now_m - last_event >= idle_timeout_s:
                stop_reason = StopReason.IDLE_TIMEOUT
                break
            if final_at is not None and now_m - final_at >= after_final_grace_s and proc.poll() is None:
                stop_reason = StopReason.NO_EXIT_AFTER_FINAL
                break
            if now_m >= next_cancel_poll:
                next_cancel_poll = now_m + cancel_poll_s
                if should_cancel():
                    stop_reason = StopReason.CANCELLED
                    break
            if on_tick is not None and now_m >= next_tick:
                next_tick = now_m + tick_s
                on_tick()
            if poll is not None and poll() == Verdict.STOP_COST:  # usage read from elsewhere (rate-limited)
                stop_reason = StopReason.COST_LIMIT
                break
            if proc.poll() is not None:
                # The agent exited; a child it left may still hold stdout open, so drain briefly, then stop.
                exited_at = exited_at or now_m
                if eof or now_m - exited_at > EXIT_DRAIN_S:
                    if not eof:
                        _drain(lines, on_line)
                    break
            elif eof:
                time.sleep(0.05)
                continue
            wait = max(0.01, min(0.25, deadline - time.time()))
            try:
                line = lines.get(timeout=wait)
            except queue.Empty:
                continue
            if line is None:
                eof = True
                continue
            n_lines += 1
            last_event = time.monotonic()
            verdict = on_line(line)
            if verdict == Verdict.FINAL and final_at is None:
                final_at = last_event
            elif verdict == Verdict.STOP_COST:
                stop_reason = StopReason.COST_LIMIT
                break
    finally:
        # Whatever happened (including an exception in a handler), nothing of the group survives.
        if proc.poll() is None:
            kill_group(pgid, kill_grace_s)
        else:
            kill_group(pgid, grace_s=1.0)  # children left behind by an agent that exited
        exit_code = _wait(proc)
        stop_guard(guard)
        reader.join(timeout=2)
        tail = ""
        if stderr_file:
            stderr_file.seek(0, os.SEEK_END)
            size = stderr_file.tell()
            stderr_file.seek(max(0, size - STDERR_TAIL_BYTES))
            tail = stderr_file.read().decode(errors="replace")
            stderr_file.close()
    return ProcessOutcome(
        exit_code=exit_code,
        stop_reason=stop_reason,
        pid=proc.pid,
        stderr_tail=tail,
        lines=n_lines,
    )


def start_guard(pgid: int) -> subprocess.Popen[bytes] | None:
    """The guard of one process group (orchestration.agents.guard): in its own session, so that killing the
    worker's group spares it; it kills `pgid` as soon as this process is gone. None if it cannot start
    (the supervision here still stops the group; the janitor is the last line)."""
    try:
        return subprocess.Popen(  # noqa: S603 - our own module, no shell
            [sys.executable, "-m", "orchestration.agents.guard", str(pgid)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        return None


def stop_guard(guard: subprocess.Popen[bytes] | None) -> None:
    """Tells the guard the group was ended here (so it never signals a reused group id) and waits for it."""
    if guard is None:
        return
    with contextlib.suppress(OSError, ValueError):
        assert guard.stdin is not None
        guard.stdin.write(b"done\n")
        guard.stdin.close()
    try:
        guard.wait(timeout=5)
    except subprocess.TimeoutExpired:
        guard.kill()
        guard.wait()


def _drain(lines: queue.Queue[bytes | None], on_line: Callable[[bytes], Verdict]) -> None:
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            return
        if line is None:
            return
        on_line(line)


def _wait(proc: subprocess.Popen[bytes]) -> int | None:
    try:
        return proc.wait(timeout=KILL_GRACE_S + 2)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        try:
            return proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return None


def _read_lines(stream: object, out: queue.Queue[bytes | None]) -> None:
    """Reads stdout lines; an over-long line is truncated rather than held whole in memory."""
    assert hasattr(stream, "readline")
    try:
        while True:
            line: bytes = stream.readline(MAX_LINE_BYTES)
            if not line:
                break
            if not line.endswith(b"\n"):
                # Either EOF mid-line or an over-long line: drain the rest of it.
                rest = line
                while rest and not rest.endswith(b"\n"):
                    rest = stream.readline(MAX_LINE_BYTES)
            out.put(line)
    except (OSError, ValueError):
        pass
    finally:
        out.put(None)
