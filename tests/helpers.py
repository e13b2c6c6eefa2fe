"""Shared test helpers: real redis-server, real prefork worker, real git repositories."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
NODE_BIN = ROOT / "node_modules" / ".bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError(
            "redis-server is not on PATH; the integration tests start their own Redis. "
            "Install it (Debian/Ubuntu: `apt-get install redis-server`, macOS: `brew install redis`)."
        )
    return path


class RedisServer:
    """A redis-server of the test's own on a free loopback port, in `tmp`; `aof` turns on the append-only
    file, so that `stop` and `start` again is a restart that keeps the data."""

    def __init__(self, tmp: Path, aof: bool = False) -> None:
        self.tmp, self.aof, self.port = tmp, aof, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.tmp)]
        args += ["--appendonly", "yes" if self.aof else "no", "--daemonize", "no", "--loglevel", "warning"]
        self.proc = subprocess.Popen(  # noqa: S603
            [redis_server_binary(), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        for _ in range(200):
            try:
                client.ping()
                return
            except redis.ConnectionError:  # also "loading the dataset in memory"
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """SIGTERM: Redis writes what it holds (the AOF, when on) and exits."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@contextlib.contextmanager
def redis_server(tmp: Path, aof: bool = False) -> Iterator[RedisServer]:
    server = RedisServer(tmp, aof)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def isolated_env(tmp: Path, **extra: str) -> Iterator[dict[str, str]]:
    """The environment of workers a module shares: a redis-server of their own (so their broker queues are no
    other test's), a fresh key prefix, a config directory and a recording `gh` first on PATH (its calls in
    `tmp/gh`)."""
    import uuid

    from tests.fixtures.fake_gh import install_fake_gh

    bin_dir = tmp / "bin"
    install_fake_gh(bin_dir, tmp / "gh")
    with redis_server(tmp) as server:
        yield dict(
            os.environ,
            ORCH_REDIS_URL=server.url,
            ORCH_KEY_PREFIX=f"t{uuid.uuid4().hex[:8]}",
            ORCH_CONFIG_DIR=str(tmp / "configs"),
            PATH=f"{bin_dir}:{os.environ['PATH']}",
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
            **extra,
        )


def sh(args: list[str], cwd: Path | str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout.strip()  # noqa: S603


def make_repo(tmp: Path, name: str = "demo") -> tuple[Path, Path]:
    """A working repository with one commit on main, cloned from a local bare remote."""
    bare = tmp / f"{name}-remote.git"
    work = tmp / name
    sh(["git", "init", "-q", "--bare", "-b", "main", str(bare)], tmp)
    sh(["git", "init", "-q", "-b", "main", str(work)], tmp)
    sh(["git", "config", "user.email", "dev@example.com"], work)
    sh(["git", "config", "user.name", "Dev"], work)
    (work / "README.md").write_text("# demo\n")
    (work / "app.py").write_text("def add(a, b):\n    return a + b\n")
    sh(["git", "add", "-A"], work)
    sh(["git", "commit", "-q", "-m", "initial"], work)
    sh(["git", "remote", "add", "origin", str(bare)], work)
    sh(["git", "push", "-q", "origin", "main"], work)
    return work, bare


@contextlib.contextmanager
def orchestrate_process(
    args: list[str],
    env: dict[str, str],
    log: Path,
    ready: bytes | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """A long-running `orchestrate` command (worker, beat) in its own process group, output to `log`;
    waits for `ready` in its output, and stops it (and kills its whole group) at the end."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "orchestration.cli", *args],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while ready is not None and ready not in log.read_bytes():
            if proc.poll() is not None:
                raise RuntimeError(f"`orchestrate {args[0]}` exited early:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"`orchestrate {args[0]}` not ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield proc
    finally:
        # The process itself first: a worker's warm shutdown lets its pool children exit on their own,
        # which is when they write their coverage data (a SIGTERM of their own would lose it).
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def cli_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`orchestrate ARGS` started in the background, its output to `log`; the caller waits for it or kills it."""
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "orchestration.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def celery_worker(
    env: dict[str, str],
    log: Path,
    agents: str = "claude-code",
    concurrency: int = 2,
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """A real prefork worker started as a user would (`orchestrate worker`)."""
    name = f"test-{os.getpid()}-{free_port()}@%h"
    args = ["worker", "--agents", agents, "-c", str(concurrency), "--without-gossip", "--without-mingle", "-n", name]
    return orchestrate_process(args, env, log, ready=b" ready.")


def wait_for(predicate, timeout: float, interval: float = 0.1):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def live_with_marker(marker: str) -> list[int]:
    """PIDs of live (non-zombie) processes whose command line holds the marker."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker.encode() in cmdline and state != "Z":
            pids.append(int(proc.name))
    return pids


TRACEBACK = "Traceback (most recent call last)"


def orchestrate(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The `orchestrate` CLI as a user runs it; it must never answer with a traceback."""
    proc = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "orchestration.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    assert TRACEBACK not in proc.stdout and TRACEBACK not in proc.stderr, (
        f"traceback from `orchestrate {' '.join(args)}`:\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


# The unprivileged OS user the ORCH_AGENT_USER tests run agents and commands as (made on first use; root only).
AGENT_USER = "orch-agent-test"


def ensure_agent_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(AGENT_USER)
    except KeyError:
        subprocess.run(  # noqa: S603
            ["useradd", "--system", "--create-home", "--home-dir", f"/var/tmp/{AGENT_USER}", AGENT_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(AGENT_USER)


RABBITMQ_HOST, RABBITMQ_PORT = "127.0.0.1", 5672


def _rabbitmqctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    if not os.path.exists(ctl):
        raise RuntimeError(
            "rabbitmqctl is not installed; the worker tests also run on RabbitMQ. Install it (Debian/Ubuntu: "
            "`apt-get install rabbitmq-server`) and start it (`rabbitmq-server -detached`)."
        )
    proc = subprocess.run([ctl, *args], capture_output=True, text=True, timeout=60)  # noqa: S603
    if proc.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")


@contextlib.contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A vhost of our own on the machine's RabbitMQ (127.0.0.1:5672, guest), removed afterwards: the broker
    URL of one test session. Fails with how to get RabbitMQ when it is not running."""
    with contextlib.closing(socket.socket()) as s:
        s.settimeout(2)
        if s.connect_ex((RABBITMQ_HOST, RABBITMQ_PORT)) != 0:
            raise RuntimeError(
                f"RabbitMQ is not listening on {RABBITMQ_HOST}:{RABBITMQ_PORT}; start it (`rabbitmq-server "
                "-detached`, or `.ci/run` starts it) or install it (`apt-get install rabbitmq-server`)."
            )
    vhost = f"orch-test-{os.getpid()}-{free_port()}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/{vhost}"
    finally:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            _rabbitmqctl("delete_vhost", vhost)
