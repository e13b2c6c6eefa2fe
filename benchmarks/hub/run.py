"""The hub benchmark: events per second and publish-to-subscriber latency of `RedisHub.emit`, next to a bare
redis-py baseline doing the same Redis work (one XADD to a capped stream and one PUBLISH), in one run.

    python -m benchmarks.hub.run [--events 20000] [--cycles 1 20] [--json OUT]

Steps: start a redis-server of its own on a free loopback port (no persistence); for each cycle count C,
C threads emit `--events / C` events each for their own cycle (as C cycles' agents do in a worker), while a
subscriber on the updates channel notes when each event arrives; then the same with the baseline. Prints,
per C: events/s, latency p50/p99/max (send start to receipt), and the hub's figures as ratios of the
baseline's. Exit status 0; 2 when redis-server is not on PATH.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import redis

from orchestration.hub import RedisHub

PREFIX = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        print("redis-server is not on PATH (Debian/Ubuntu: apt-get install redis-server)", file=sys.stderr)
        raise SystemExit(2)
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(200):
        try:
            client.ping()
            return proc, url
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def measure(
    url: str, cycles: int, events: int, emit_for: Callable[[redis.Redis], Callable[[str, int], None]]
) -> dict[str, float]:
    """C threads emit `events / C` events each; a subscriber notes each arrival. Returns the figures."""
    sent: dict[tuple[str, int], float] = {}
    received: dict[tuple[str, int], float] = {}
    sub_client = redis.Redis.from_url(url)
    pubsub = sub_client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    pubsub.subscribe(f"{PREFIX}:updates")
    done = threading.Event()
    total = (events // cycles) * cycles

    def listen() -> None:
        while len(received) < total and not done.is_set():
            msg = pubsub.get_message(timeout=0.5)
            if msg and msg.get("type") == "message":
                payload = orjson.loads(msg["data"])
                received[(payload["cycle_id"], payload["data"]["n"])] = time.perf_counter()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(0.2)

    def work(cycle_id: str) -> None:
        emit = emit_for(redis.Redis.from_url(url))
        for n in range(events // cycles):
            sent[(cycle_id, n)] = time.perf_counter()
            emit(cycle_id, n)

    threads = [threading.Thread(target=work, args=(f"c{i}-{time.time_ns()}",)) for i in range(cycles)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    listener.join(30)
    done.set()
    pubsub.close()
    latencies = [(received[k] - sent[k]) * 1000 for k in sent if k in received]
    return {
        "events": float(total),
        "seconds": elapsed,
        "events_per_s": total / elapsed,
        "lost": float(total - len(latencies)),
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies, default=0.0),
    }


def hub_emitter(client: redis.Redis) -> Callable[[str, int], None]:
    hub = RedisHub(client, PREFIX)

    def emit(cycle_id: str, n: int) -> None:
        hub.emit(cycle_id, "bench", "execute", "agent.message", {"text": "x" * 80, "n": n})

    return emit


def bare_emitter(client: redis.Redis) -> Callable[[str, int], None]:
    """The same Redis work without the hub: one XADD to a capped stream and one PUBLISH, pipelined."""

    def emit(cycle_id: str, n: int) -> None:
        event = {"cycle_id": cycle_id, "workspace": "bench", "seq": n, "ts": "", "stage": "execute"}
        body = orjson.dumps({**event, "kind": "agent.message", "data": {"text": "x" * 80, "n": n}})
        pipe = client.pipeline(transaction=False)
        pipe.xadd(f"{PREFIX}:bare:{cycle_id}", {"event": body}, maxlen=20_000, approximate=True)
        pipe.publish(f"{PREFIX}:updates", body)
        pipe.execute()

    return emit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--cycles", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_redis(Path(tmp))
        try:
            for cycles in args.cycles:
                bare = measure(url, cycles, args.events, bare_emitter)
                hub = measure(url, cycles, args.events, hub_emitter)
                results[str(cycles)] = {"hub": hub, "bare": bare}
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"{'cycles':>6} {'who':>5} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'lost':>5}")
    for cycles, pair in results.items():
        for who in ("bare", "hub"):
            f = pair[who]
            print(
                f"{cycles:>6} {who:>5} {f['events_per_s']:>10.0f} {f['p50_ms']:>8.2f} {f['p99_ms']:>8.2f} "
                f"{f['max_ms']:>8.2f} {f['lost']:>5.0f}"
            )
        hub, bare = pair["hub"], pair["bare"]
        print(
            f"{cycles:>6} ratio hub/bare: throughput {hub['events_per_s'] / bare['events_per_s']:.2f}x, "
            f"p50 latency {hub['p50_ms'] / max(bare['p50_ms'], 1e-9):.2f}x, "
            f"p99 {hub['p99_ms'] / max(bare['p99_ms'], 1e-9):.2f}x"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
