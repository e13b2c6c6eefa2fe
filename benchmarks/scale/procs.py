"""The processes a scale run starts (redis-server, beat, workers), each stopped when its block ends, also on
an error or Ctrl-C: SIGTERM to its own process group (a prefork worker's children with it), then SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from benchmarks.hub.run import start_redis

REPO = Path(__file__).resolve().parents[2]


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # its own group (start_new_session): the process and its children
    except ProcessLookupError:
        return
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@contextmanager
def spawned(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`argv` in its own session, output to `log`; stopped (with its children) when the block ends."""
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603
            argv, env={**os.environ, **env}, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            _stop(proc)


@contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    """A redis-server of the benchmark's own (free loopback port, no persistence); yields its URL (db 0)."""
    proc, url = start_redis(tmp)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident memory of a process now and at its peak (VmRSS, VmHWM), in MB."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(rest.split()[0]) * 1024 / 1e6
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def wait_for(predicate: Callable[[], bool], timeout_s: float, every_s: float = 0.05) -> bool:
    """True as soon as `predicate()` is, False after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return False
