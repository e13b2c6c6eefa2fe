"""The overhead benchmark: what Orchestrate adds around an agent, next to bare Celery and a bare Python start,
all measured in one run.

    python -m benchmarks.overhead.run [--cycles 10] [--warmup 1] [--starts 5] [--via-cli] [--json OUT]

Steps: start a redis-server of its own on a free loopback port (no persistence), a git repository with a
local bare remote, and three prefork workers with one process each on that Redis: `orchestrate worker`
(the product), and two workers of the bare app (`benchmarks.overhead.bare_app`) on queues of their own, one
with Celery's defaults ("bare"), one with the product's Celery settings and `-E` ("bare+conf"). Then
`--warmup` + `--cycles` rounds, each: one cycle with an instant stand-in agent (sent from this process as
`orchestrate run` sends it, or by that command with `--via-cli`; then its event stream is read until it has
ended), one bare chain and one bare+conf chain of as many no-op tasks as the cycle has tasks, and one start
of the stand-in on its own. Last, `--starts` rounds of three commands timed as subprocesses: `python -c
pass`, `orchestrate --help` and `orchestrate run CONFIG --no-follow --json`.

Prints (a) the hand-off between stages: per hop, the p50 of the gap from one stage's `stage.finished` to the
next stage's `stage.started`, next to the gap from one no-op task's end to the next one's start, the ratios,
and how much of a hop runs inside the tasks (Celery's run time of each task, read from its worker's log, minus
the task's own work); (b) where the rest of a cycle's time goes, from its events, the agent's own run left
out; (c) the wall time of `run --no-follow`, best of `--starts`, as ratios of the two baselines. Exit status
0; 2 when redis-server is not on PATH.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Any

import redis

from benchmarks.hub.run import start_redis
from orchestration.keys import Keys

ROOT = Path(__file__).resolve().parents[2]
FAKE_AGENT = ROOT / "tests" / "fixtures" / "fake_claude.py"
PREFIX = "bench"
WORKSPACE = "overhead"
STAGES = ("start", "analyze", "decide", "execute", "publish", "finish")
HOPS = [f"{a}→{b}" for a, b in itertools.pairwise(STAGES)]
BARE_QUEUES = {"bare": "bench.bare", "bare+conf": "bench.bare-conf"}
GOAL_RATIO = 1.5


# -- set-up -------------------------------------------------------------------------------------------------


def make_repo(tmp: Path) -> Path:
    """A working repository with one commit on main, cloned from a local bare remote."""
    bare, work = tmp / "remote.git", tmp / "repo"

    def git(*args: str, cwd: Path = tmp) -> None:
        subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)  # noqa: S603

    git("init", "-q", "--bare", "-b", "main", str(bare))
    git("init", "-q", "-b", "main", str(work))
    git("config", "user.email", "bench@example.com", cwd=work)
    git("config", "user.name", "Bench", cwd=work)
    (work / "README.md").write_text("# bench\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "initial", cwd=work)
    git("remote", "add", "origin", str(bare), cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    return work


def write_config(tmp: Path, repo: Path) -> Path:
    """A workspace whose agent is the instant stand-in, decided by the heuristic, with no PR."""
    cfg = tmp / f"{WORKSPACE}.json"
    data = {
        "id": WORKSPACE,
        "workspace": {"repo": str(repo)},
        "budget": {"cycle_s": 120, "idle_timeout_s": 60, "daily_cost_usd": 1000},
        "sessions": {"claude_dir": str(tmp / "none"), "codex_dir": str(tmp / "none")},
        "goals": ["Write orchestrated.txt"],
        "agents": {"allow": ["claude-code"], "claude-code": {"command": str(FAKE_AGENT)}},
        "decision": {"backend": "heuristic", "avoid_repeat_days": 0},  # the same task every cycle
        "pr": {"enabled": False},
    }
    cfg.write_text(json.dumps(data))
    return cfg


def base_env(url: str, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "BENCH_"))}
    env.update(
        ORCH_REDIS_URL=url,
        ORCH_KEY_PREFIX=PREFIX,
        ORCH_STATE_DIR=str(tmp / "state"),
        ORCH_CONFIG_DIR=str(tmp / "configs"),
        BENCH_BROKER_URL=url,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    return env


@contextlib.contextmanager
def background(argv: list[str], env: dict[str, str], log: Path, ready: bytes = b" ready.") -> Iterator[None]:
    """A worker in its own process group, output to `log`; waits until it says `ready`, and stops its whole
    group at the end."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(  # noqa: S603
            argv,
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while ready not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{' '.join(argv[:6])} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def product_worker(env: dict[str, str], log: Path) -> contextlib.AbstractContextManager[None]:
    args = ["worker", "--agents", "claude-code", "-c", "1", "--without-gossip", "--without-mingle", "-n", "bench@%h"]
    return background([sys.executable, "-m", "orchestration.cli", *args], env, log)


def bare_worker(env: dict[str, str], log: Path, who: str) -> contextlib.AbstractContextManager[None]:
    argv = [sys.executable, "-m", "celery", "-A", "benchmarks.overhead.bare_app", "worker", "-P", "prefork", "-c", "1"]
    argv += ["-Q", BARE_QUEUES[who], "--without-gossip", "--without-mingle", "-n", f"{who.replace('+', '-')}@%h"]
    argv += ["--loglevel", "INFO"]
    if who == "bare+conf":
        env = dict(env, BENCH_BARE_CONF="product")
        argv.append("-E")  # as `orchestrate worker` starts Celery
    return background(argv, env, log)


# -- one cycle, one chain -----------------------------------------------------------------------------------


def run_cli(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds of one `orchestrate` command (or of `python ARGS` when args start with `-c`), and its stdout."""
    argv = [sys.executable, *args] if args[0] == "-c" else [sys.executable, "-m", "orchestration.cli", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # noqa: S603
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return elapsed, proc.stdout


def wait_cycle(client: redis.Redis, cycle_id: str, timeout: float = 120) -> list[dict[str, Any]]:
    """The cycle's events once it has ended and released its workspace (so that the next one may start). Reads
    the stream blocking, as `orchestrate watch` does, so that waiting takes no CPU from the worker."""
    keys = Keys(PREFIX)
    end = time.monotonic() + timeout
    events: list[dict[str, Any]] = []
    last: Any = "0-0"
    while not any(e["kind"] == "cycle.finished" for e in events):
        if time.monotonic() > end:
            raise SystemExit(f"cycle {cycle_id} did not end within {timeout:.0f} s")
        resp: Any = client.xread({keys.events(cycle_id): last}, count=500, block=1000)
        for _stream, rows in resp or []:
            for entry_id, fields in rows:
                last = entry_id
                events.append(json.loads(fields[b"event"]))
    while client.exists(keys.lock(WORKSPACE)):  # released just after cycle.finished
        if time.monotonic() > end:
            raise SystemExit(f"cycle {cycle_id} did not release its workspace within {timeout:.0f} s")
        time.sleep(0.01)
    return events


def run_cycle(client: redis.Redis, cfg: Path, env: dict[str, str], via_cli: bool) -> list[dict[str, Any]]:
    """One cycle of the workspace, to its end. Sent from this process as `orchestrate run` sends it (the bare
    chains are sent from here too), or with `via_cli` by that command, whose exit then overlaps the first
    stages."""
    if via_cli:
        _, out = run_cli(["run", str(cfg), "--no-follow", "--json"], env)
        return wait_cycle(client, json.loads(out)["cycle_id"])
    from orchestration import cycle
    from orchestration.config import load_config
    from tasks.cycle import send_cycle, services

    config = load_config(cfg)
    ctx = cycle.enqueue(services(), config, trigger="manual")
    send_cycle(ctx, config)
    return wait_cycle(client, ctx.cycle_id)


def ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()


def cycle_figures(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Seconds of each part of one cycle, from its events' timestamps (milliseconds)."""
    first: dict[tuple[str, str], float] = {}
    for e in events:
        first.setdefault((e["stage"], e["kind"]), ts(e))
    status = next(e["data"]["status"] for e in events if e["kind"] == "cycle.finished")
    if status != "succeeded":
        raise SystemExit(f"a cycle ended {status}: {events[-1]['data']}")

    def at(stage: str, kind: str) -> float:
        return first[(stage, kind)]

    later = [
        e for e in events if e["kind"].startswith("agent.") and e["kind"] not in ("agent.started", "agent.heartbeat")
    ]
    agent_run = at("execute", "agent.finished") - at("execute", "agent.started")
    out: dict[str, Any] = {"cycle_id": events[0]["cycle_id"]}
    out["hops"] = [at(b, "stage.started") - at(a, "stage.finished") for a, b in itertools.pairwise(STAGES)]
    out["work"] = {stage: at(stage, "stage.finished") - at(stage, "stage.started") for stage in STAGES}
    out["queue → start"] = at("start", "stage.started") - at("start", "cycle.queued")
    for stage in STAGES:
        if stage != "execute":
            out[stage] = out["work"][stage]
    out["execute, before the agent"] = at("execute", "agent.started") - at("execute", "stage.started")
    out["execute, after the agent"] = at("execute", "stage.finished") - at("execute", "agent.finished")
    out["hand-offs, all"] = sum(out["hops"])
    out["total without the agent"] = at("finish", "cycle.finished") - at("start", "cycle.queued") - agent_run
    out["agent run (left out)"] = agent_run
    out["agent.started → next agent event"] = ts(later[0]) - at("execute", "agent.started")
    return out


def run_chain(who: str, tasks: int) -> list[list[float]]:
    """One chain of `tasks` no-op tasks on the bare worker `who`: each task's [start, end] (unix seconds)."""
    from celery import chain

    from benchmarks.overhead.bare_app import noop

    queue = BARE_QUEUES[who]
    sigs = [noop.si([]).set(queue=queue)] + [noop.s().set(queue=queue) for _ in range(tasks - 1)]
    stamps: list[list[float]] = chain(*sigs).apply_async().get(timeout=60)
    return stamps


def chain_gaps(stamps: list[list[float]]) -> list[float]:
    return [b[0] - a[1] for a, b in itertools.pairwise(stamps)]


# Celery's line for each task that succeeded: its name, and its run time from just before the task function
# was called to after the next task of the chain was sent and the result stored.
SUCCEEDED = re.compile(r"Task (?P<name>[\w.]+)\[[0-9a-f-]+\] succeeded in (?P<runtime>[0-9.e-]+)s: (?P<ret>.*)$")
STAGE_OF_TASK = {
    "orchestrate.start": "start",
    "orchestrate.op.session.analyze": "analyze",
    "orchestrate.op.orchestrate.decide": "decide",
    "orchestrate.op.agent.execute": "execute",
    "orchestrate.op.pr.create": "publish",
    "orchestrate.finish": "finish",
}


def task_runtimes(log: Path) -> dict[Any, list[tuple[str, float]]]:
    """Celery's run time of each task in a worker's log, by cycle id (the product) or by the chain's first
    start stamp (the bare app), in the order they ran."""
    out: dict[Any, list[tuple[str, float]]] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = SUCCEEDED.search(line)
        if m is None:
            continue
        ret = m["ret"]
        cycle = re.search(r"'cycle_id': '([^']+)'", ret)
        chain_start = re.match(r"\[\[([0-9.e+-]+),", ret)
        key: Any = cycle[1] if cycle else float(chain_start[1]) if chain_start else None
        if key is not None:
            out.setdefault(key, []).append((m["name"], float(m["runtime"])))
    return out


def around_work(results: dict[str, Any], logs: dict[str, Path]) -> dict[str, list[float]]:
    """Per task, Celery's run time minus the task's own work (the stage between its stage events, or the no-op's
    body): what runs in the task around the work, from receiving the context to storing the result."""
    out: dict[str, list[float]] = {"orchestrate": [], **{who: [] for who in BARE_QUEUES}}
    runtimes = task_runtimes(logs["orchestrate"])
    for cycle in results["cycles"]:
        for name, runtime in runtimes.get(cycle["cycle_id"], []):
            stage = STAGE_OF_TASK.get(name)
            if stage is not None:
                out["orchestrate"].append(runtime - cycle["work"][stage])
    for who in BARE_QUEUES:
        runtimes = task_runtimes(logs[who])
        for stamps in results["chains"][who]:
            ran = runtimes.get(stamps[0][0], [])
            out[who] += [runtime - (end - start) for (_, runtime), (start, end) in zip(ran, stamps, strict=False)]
    return out


def agent_startup(tmp: Path) -> float:
    """Seconds from spawning the stand-in agent (as the worker does: its path, run by its #! line) to its first
    line on stdout."""
    work = tmp / "agent-start"
    work.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(FAKE_AGENT)], cwd=work, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)  # noqa: S603
    assert proc.stdout is not None
    proc.stdout.readline()
    elapsed = time.perf_counter() - t0
    proc.stdout.read()
    proc.wait()
    return elapsed


# -- report -------------------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f}"


def report(results: dict[str, Any]) -> None:
    cycles, chains = results["cycles"], results["chains"]
    hops = {
        "orchestrate": [c["hops"] for c in cycles],
        **{who: [chain_gaps(st) for st in chains[who]] for who in chains},
    }
    p50 = {who: [median(h[i] for h in rows) for i in range(len(HOPS))] for who, rows in hops.items()}
    p50_all = {who: median(g for h in rows for g in h) for who, rows in hops.items()}
    print(f"(a) hand-off between stages, p50 ms over {len(cycles)} cycles / chains of {len(STAGES)} tasks")
    print(f"{'hop':<18} {'orchestrate':>11} {'bare':>8} {'bare+conf':>9} {'orch/bare':>9} {'orch/conf':>9}")
    labels = [*HOPS, "all hops"]
    for i, label in enumerate(labels):
        orch, bare, conf = (p50[w][i] if i < len(HOPS) else p50_all[w] for w in ("orchestrate", *BARE_QUEUES))
        print(f"{label:<18} {ms(orch):>11} {ms(bare)} {ms(conf):>9} {orch / bare:>8.2f}× {orch / conf:>8.2f}×")
    ratio = results["hop_ratio"] = p50_all["orchestrate"] / p50_all["bare"]
    verdict = "met" if ratio < GOAL_RATIO else "missed"
    print(f"goal: all hops p50 under {GOAL_RATIO}× bare Celery's: {ratio:.2f}× ({verdict})")
    around = {who: median(v) if v else float("nan") for who, v in results["around_work"].items()}
    print("where a hop's time goes, p50 ms:")
    print(f"{'  in each task, around its work':<36} {ms(around['orchestrate']):>11} {ms(around['bare'])} ", end="")
    print(f"{ms(around['bare+conf']):>9}")
    rest = {who: p50_all[who] - around[who] for who in around}
    print(f"{'  the rest (hop p50 − the above)':<36} {ms(rest['orchestrate']):>11} {ms(rest['bare'])} ", end="")
    print(f"{ms(rest['bare+conf']):>9}")

    print(f"\n(b) one cycle with the instant agent, ms over {len(cycles)} cycles")
    print(f"{'part':<36} {'p50':>8} {'max':>8}")
    parts = ["queue → start", "start", "analyze", "decide", "execute, before the agent", "execute, after the agent"]
    parts += ["publish", "finish", "hand-offs, all", "total without the agent", "agent run (left out)"]
    parts += ["agent.started → next agent event", "stand-in spawn → its first line"]
    for part in parts:
        values = [c[part] for c in cycles]
        print(f"{part:<36} {ms(median(values))} {ms(max(values))}")
    bare_total = median(st[-1][1] - st[0][0] for st in chains["bare"])
    total = median(c["total without the agent"] for c in cycles)
    print(f"{'bare chain, first start → last end':<36} {ms(bare_total)}")
    print(f"total without the agent / bare chain end to end: {total / bare_total:.1f}×")

    starts = results["starts"]
    best = {k: min(v) for k, v in starts.items()}
    print(f"\n(c) wall time of a command, best of {len(starts['python -c pass'])}, ms")
    for name, value in best.items():
        print(f"{name:<36} {ms(value)}")
    run_s, help_s, pass_s = best["run --no-follow --json"], best["orchestrate --help"], best["python -c pass"]
    print(
        f"ratios: run/pass {run_s / pass_s:.1f}×, run/--help {run_s / help_s:.2f}×, --help/pass {help_s / pass_s:.1f}×"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=10, help="measured rounds (one cycle, one chain of each)")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first and not counted")
    parser.add_argument("--starts", type=int, default=5, help="rounds of the timed commands in (c)")
    parser.add_argument("--via-cli", action="store_true", help="start the measured cycles with `orchestrate run`")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.starts < 1:
        parser.error("--cycles and --starts must be at least 1")
    results: dict[str, Any] = {"cycles": [], "chains": {who: [] for who in BARE_QUEUES}}
    # As `make install` does: processes start from compiled modules, also under PYTHONDONTWRITEBYTECODE.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "orchestration", "tasks"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        proc, url = start_redis(tmp)
        try:
            env = base_env(url, tmp)
            # This process sends the cycles and the bare chains to that Redis too.
            os.environ.update({k: v for k, v in env.items() if k.startswith(("ORCH_", "BENCH_"))})
            os.environ.pop("BENCH_BARE_CONF", None)
            cfg = write_config(tmp, make_repo(tmp))
            client = redis.Redis.from_url(url)
            logs = {"orchestrate": tmp / "worker.log", "bare": tmp / "bare.log", "bare+conf": tmp / "bare-conf.log"}
            with (
                product_worker(env, logs["orchestrate"]),
                bare_worker(env, logs["bare"], "bare"),
                bare_worker(env, logs["bare+conf"], "bare+conf"),
            ):
                for n in range(args.warmup + args.cycles):
                    figures = cycle_figures(run_cycle(client, cfg, env, args.via_cli))
                    stamps = {who: run_chain(who, len(STAGES)) for who in BARE_QUEUES}
                    figures["stand-in spawn → its first line"] = agent_startup(tmp)
                    if n >= args.warmup:
                        results["cycles"].append(figures)
                        for who, st in stamps.items():
                            results["chains"][who].append(st)
                starts: dict[str, list[float]] = {"python -c pass": [], "orchestrate --help": []}
                starts["run --no-follow --json"] = []
                for _ in range(args.starts):
                    starts["python -c pass"].append(run_cli(["-c", "pass"], env)[0])
                    starts["orchestrate --help"].append(run_cli(["--help"], env)[0])
                    elapsed, out = run_cli(["run", str(cfg), "--no-follow", "--json"], env)
                    starts["run --no-follow --json"].append(elapsed)
                    wait_cycle(client, json.loads(out)["cycle_id"])  # not timed: the next command runs alone
                results["starts"] = starts
            results["around_work"] = around_work(results, logs)
        finally:
            proc.terminate()
            proc.wait(10)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
