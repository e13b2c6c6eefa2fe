"""The scale benchmark: what a big deployment costs beat, Redis and the broker, measured on this machine.

    python -m benchmarks.scale.run [--workspaces 1000] [--cycles 200] [--events 400] [--messages 2000]
                                   [--no-schedule] [--no-redis] [--no-beat] [--no-broker] [--json OUT]

1. Schedule: `--workspaces` config files in a temp directory; time and peak memory of building the beat
   schedule from them (what beat does at start and at every reload), next to the same for 10 files, as a
   ratio per entry (a flat ratio means linear cost).
2. Redis: `--cycles` cycles written through the product's own state and hub (the queued record, a started
   record, `--events` agent events each, the closed record with its report, the task history), on a
   redis-server of its own; `MEMORY USAGE` of every key a cycle leaves, per cycle, split into the record
   and the event stream; then the figure for 1,000 workspaces with one cycle a night for 30 days, with the
   expiries the product sets (records 90 days, streams 7 days after the cycle ends).
3. Beat's fires (`fire.py`): two real `orchestrate beat` processes, over `--beat-small` (10) and
   `--beat-workspaces` (default `--workspaces`) configs that all fire at one upcoming minute; seconds from
   the minute to each fire beat sends, its start-up and its memory (`--beat-scheduler redbeat` for RedBeat,
   `--beat-on-missed skip` for one entry per config).
4. Broker (`broker.py`): `--messages` stage messages to a prefork worker (concurrency 2) running a no-op
   stage, with the product's Celery settings and with Celery's defaults, a real cycle context and a tiny
   one: messages/s sent, and end to end.
The load average is printed at the start and the end: on a shared machine, read the ratios within a run.
Every server and process the run starts is stopped when its part ends, also on an error or Ctrl-C.
Exit status 0; 2 when redis-server is not on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import redis

from benchmarks.scale import broker, fire
from benchmarks.scale.procs import redis_server
from orchestration.hub import ENDED_TTL_S, RedisHub
from orchestration.keys import Keys
from orchestration.state import CYCLE_TTL_S, RedisState

PREFIX = "scale"


def write_configs(directory: Path, n: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        config = {
            "id": f"ws{i:04d}",
            "workspace": {"repo": f"/srv/repos/ws{i:04d}"},
            "schedule": {"cron": f"{i % 60} {i % 6} * * *", "timezone": "Europe/Paris", "on_missed": "catch_up"},
            "budget": {"cycle_s": 1800},
        }
        (directory / f"ws{i:04d}.json").write_text(json.dumps(config))


def beat_load(directory: Path) -> tuple[float, float, int]:
    """Seconds and peak MB of building the schedule from `directory`, and its number of entries."""
    import os

    from beat_schedule import build_beat_schedule
    from orchestration.settings import get_settings

    os.environ["ORCH_CONFIG_DIR"] = str(directory)
    get_settings.cache_clear()
    tracemalloc.start()
    t0 = time.perf_counter()
    schedule, errors = build_beat_schedule(directory)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert not errors, errors[:3]
    return seconds, peak / 1e6, len(schedule)


def one_cycle(state: RedisState, hub: RedisHub, i: int, events: int) -> str:
    from orchestration import cycle, lifecycle
    from orchestration.config import parse_config
    from orchestration.models import Decision, Status, iso, utcnow
    from orchestration.services import Services

    svc = Services(state=state, hub=hub, state_dir=Path(tempfile.gettempdir()))
    cfg = parse_config({"id": f"ws{i % 50:02d}", "workspace": {"repo": f"/srv/repos/ws{i % 50:02d}"}})
    ctx = cycle.enqueue(svc, cfg, trigger="schedule")
    ctx.status, ctx.started_at, ctx.deadline = Status.RUNNING, iso(utcnow()), time.time() + 1800
    ctx.decision = Decision(
        title="Add tests for the parser", task="Write unit tests for parse_config covering bad input. " * 4,
        agent="claude-code", rationale="Sessions show repeated failures in the parser. " * 3, op_hash=f"h{i}",
        source="heuristic", confidence=0.8,
    )  # fmt: skip
    lifecycle.save(svc, ctx)
    for n in range(events):
        kind = ("agent.message", "agent.tool_call", "agent.tool_result", "agent.heartbeat")[n % 4]
        data = {"text": f"step {n}: reading the module and writing a test for the next case " * 2}
        hub.emit(ctx.cycle_id, ctx.workspace, "execute", kind, data)
    ctx.status = Status.SUCCEEDED
    lifecycle.close(ctx, svc)
    return ctx.cycle_id


def redis_per_cycle(url: str, cycles: int, events: int) -> dict[str, float]:
    client = redis.Redis.from_url(url)
    state, hub, keys = RedisState(client, PREFIX), RedisHub(client, PREFIX), Keys(PREFIX)
    ids = [one_cycle(state, hub, i, events) for i in range(cycles)]
    record = sum(client.memory_usage(keys.cycle(c), samples=0) or 0 for c in ids) / cycles
    stream = sum(client.memory_usage(keys.events(c), samples=0) or 0 for c in ids) / cycles
    total = sum(client.memory_usage(k, samples=0) or 0 for k in client.scan_iter(match=f"{PREFIX}:*", count=1000))
    return {"record_bytes": record, "stream_bytes": stream, "all_keys_bytes_per_cycle": total / cycles}


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the parts' blocks: every server and process they started stops


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminated)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspaces", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--no-schedule", action="store_true", help="skip the schedule build (part 1)")
    parser.add_argument("--no-redis", action="store_true", help="skip Redis memory per cycle (part 2)")
    parser.add_argument("--no-beat", action="store_true", help="skip beat's fire accuracy (part 3)")
    parser.add_argument("--no-broker", action="store_true", help="skip the broker's throughput (part 4)")
    parser.add_argument("--beat-workspaces", type=int, help="configs of the big beat (default: --workspaces)")
    parser.add_argument("--beat-small", type=int, default=10, help="configs of the beat it is compared with")
    parser.add_argument("--beat-scheduler", choices=["default", "redbeat"], default="default")
    parser.add_argument("--beat-on-missed", choices=["catch_up", "skip"], default="catch_up",
                        help="catch_up: two entries per config, as in part 1")  # fmt: skip
    parser.add_argument("--beat-timezone", default="Europe/Paris", help="the configs' schedule.timezone")
    parser.add_argument("--beat-lead", type=float, default=40.0, help="seconds at least from now to the cron minute")
    parser.add_argument("--messages", type=int, default=2000, help="stage messages per broker run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    out: dict[str, Any] = {"loadavg_start": os.getloadavg()}
    print(f"load average at start: {loadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        if not args.no_schedule:
            write_configs(base / "small", 10)
            write_configs(base / "big", args.workspaces)
            beat_load(base / "small")  # imports and first-use costs, not measured
            small_s, small_mb, small_n = beat_load(base / "small")
            big_s, big_mb, big_n = beat_load(base / "big")
            out["beat"] = {"small": [small_n, small_s, small_mb], "big": [big_n, big_s, big_mb]}
            report_schedule(out["beat"])
        with redis_server(base) as url:
            if not args.no_redis:
                out["redis"] = redis_per_cycle(url, args.cycles, args.events)
                redis.Redis.from_url(url).flushall()
                report_redis(out["redis"], args.events)
                out["thousand_workspaces_30_days_mib"] = thousand_workspaces(out["redis"])
            if not args.no_beat:
                big = args.beat_workspaces or args.workspaces
                out["beat_fire"] = fire.beat_fire(
                    base,
                    url,
                    args.beat_small,
                    big,
                    args.beat_scheduler,
                    args.beat_lead,
                    args.beat_on_missed,
                    args.beat_timezone,
                )
                redis.Redis.from_url(url).flushall()
                fire.report(out["beat_fire"])
            if not args.no_broker:
                out["broker"] = broker.broker_throughput(base, url, args.messages)
                broker.report(out["broker"])
    out["loadavg_end"] = os.getloadavg()
    print(f"load average at end: {loadavg()}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


def report_schedule(beat: dict[str, list[float]]) -> None:
    small_n, small_s, small_mb = beat["small"]
    big_n, big_s, big_mb = beat["big"]
    print(f"beat schedule: {small_n} entries in {small_s:.3f} s ({small_mb:.1f} MB peak); "
          f"{big_n} entries in {big_s:.2f} s ({big_mb:.1f} MB peak)")  # fmt: skip
    print(f"  per entry: {big_s / big_n * 1000:.2f} ms vs {small_s / small_n * 1000:.2f} ms "
          f"(ratio {(big_s / big_n) / (small_s / small_n):.2f}; 1 = linear)", flush=True)  # fmt: skip


def report_redis(r: dict[str, float], events: int) -> None:
    per = r["all_keys_bytes_per_cycle"] / 1024
    print(f"redis per cycle ({events} events): record {r['record_bytes'] / 1024:.1f} KiB, "
          f"stream {r['stream_bytes'] / 1024:.1f} KiB, all keys {per:.1f} KiB")  # fmt: skip


def thousand_workspaces(r: dict[str, float]) -> float:
    records_kept = 1000 * min(30, CYCLE_TTL_S // 86400)
    streams_kept = 1000 * min(30, ENDED_TTL_S // 86400)
    total = records_kept * r["record_bytes"] + streams_kept * r["stream_bytes"]
    print(f"1,000 workspaces x 1 cycle a night x 30 days: {records_kept} records + {streams_kept} streams "
          f"= {total / 2**20:.0f} MiB", flush=True)  # fmt: skip
    return float(total / 2**20)


if __name__ == "__main__":
    raise SystemExit(main())
