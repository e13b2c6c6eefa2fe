"""Load: 50 cycles over 10 workspaces on two real prefork workers (concurrency 2 each), submitted in process
through the same calls `orchestrate run --no-follow` makes. Every cycle ends; no two cycles of one workspace
hold its lock at once (read from the event streams); report, record and last event agree; every event reaches a
live pub/sub subscriber, p99 within a generous bound. Throughput, orchestration overhead and event latency are
printed (run with `-s`); only the latency bound is asserted."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestration import cycle
from orchestration.config import WorkspaceConfig, load_config
from orchestration.deployment import config_problems
from orchestration.hub import RedisHub
from orchestration.keys import Keys
from orchestration.services import Services
from orchestration.settings import get_settings
from orchestration.state import RedisState
from tests.helpers import ROOT, celery_worker, make_repo, wait_for

FAKE_CLAUDE = ROOT / "tests" / "fixtures" / "fake_claude.py"
pytestmark = [pytest.mark.integration, pytest.mark.timeout(200)]

WORKSPACES = 10
WAVES = 5
# Workspaces whose third and fourth cycles are sent together, at the same moment: one of each pair is expected
# to find the workspace locked.
DUPLICATED = (0, 1, 2)
RUN_TIMEOUT_S = 150.0
# The next wave goes once no more than this share of the cycles sent so far is still under way.
WAVE_GAP = 0.2


def ts_of(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# What the pub/sub latency of events (event ts -> received) must stay under at p99, on a loaded machine.
LATENCY_P99_BOUND_MS = 2000.0


def pct(values: list[float], q: float) -> float:
    """The nearest-rank percentile `q` (0..100) of `values`."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def write_config(tmp: Path, name: str) -> Path:
    repo, _bare = make_repo(tmp, name)
    data = {
        "id": name,
        "workspace": {"repo": str(repo)},
        "budget": {"cycle_s": 120, "idle_timeout_s": 60},
        "sessions": {"claude_dir": str(tmp / "none"), "codex_dir": str(tmp / "none")},
        "goals": ["Write orchestrated.txt"],
        "agents": {"allow": ["claude-code"], "claude-code": {"command": str(FAKE_CLAUDE)}},
        # The same goal every cycle: no dedupe window, so that each cycle has a task.
        "decision": {"backend": "heuristic", "avoid_repeat_days": 0},
        "pr": {"enabled": False},
    }
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


@dataclass
class Subscriber:
    """Every message on `<prefix>:updates`, with the time this process received it."""

    client: Any  # redis-py's return types are unions over decode_responses; this client returns bytes
    channel: str
    received: list[tuple[float, bytes]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        pubsub = self.client.pubsub()
        pubsub.subscribe(self.channel)
        try:
            while not self.stop.is_set():
                msg = pubsub.get_message(timeout=0.2)
                if msg is None:
                    continue
                if msg["type"] == "subscribe":
                    self.ready.set()
                elif msg["type"] == "message":
                    self.received.append((time.time(), msg["data"]))
        finally:
            pubsub.close()


@dataclass
class Cycle:
    cycle_id: str
    workspace: str
    duplicate: bool
    record: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def first(self, kind: str, stage: str | None = None) -> dict[str, Any] | None:
        return next((e for e in self.events if e["kind"] == kind and stage in (None, e["stage"])), None)

    @property
    def ran(self) -> bool:
        return self.first("cycle.started") is not None

    @property
    def held(self) -> tuple[float, float]:
        """From `cycle.started` (emitted once the lock is taken) to the last event emitted before the lock is
        released (`close` releases it and then emits only the finish stage's end and `cycle.finished`)."""
        started = self.first("cycle.started")
        assert started is not None
        before = [
            e
            for e in self.events
            if e["kind"] != "cycle.finished" and not (e["kind"] == "stage.finished" and e["stage"] == "finish")
        ]
        return ts_of(started["ts"]), ts_of(before[-1]["ts"])

    def span(self, kind: str, stage: str | None = None) -> tuple[float, float]:
        """From the first `kind` event (of `stage`) to `cycle.finished`."""
        begin, end = self.first(kind, stage), self.first("cycle.finished")
        assert begin is not None and end is not None
        return ts_of(begin["ts"]), ts_of(end["ts"])


def overlaps(spans: list[tuple[str, float, float]]) -> list[tuple[str, str, float]]:
    """Pairs of spans that overlap strictly (touching ends do not), with the overlap in ms."""
    found = []
    ordered = sorted(spans, key=lambda s: s[1])
    for i, (a, a0, a1) in enumerate(ordered):
        for b, b0, b1 in ordered[i + 1 :]:
            if b0 < a1 and a0 < b1:
                found.append((a, b, round((min(a1, b1) - max(a0, b0)) * 1000, 1)))
    return found


def test_fifty_cycles_over_ten_workspaces_on_two_workers(
    tmp_path: Path, orch_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    t_begin = time.monotonic()
    for name in ("ORCH_REDIS_URL", "ORCH_KEY_PREFIX", "ORCH_STATE_DIR", "ORCH_CONFIG_DIR"):
        monkeypatch.setenv(name, orch_env[name])
    get_settings.cache_clear()
    from tasks.app import app, settings_conf
    from tasks.cycle import send_cycle

    if app.configured:  # configured earlier in this session: point it at this test's Redis
        app.conf.update(settings_conf())
        app.close()

    names = [f"ws{i}" for i in range(WORKSPACES)]
    configs: dict[str, WorkspaceConfig] = {}
    for name in names:
        cfg = load_config(write_config(tmp_path, name))
        assert config_problems(cfg, get_settings()) == []
        configs[name] = cfg

    prefix = orch_env["ORCH_KEY_PREFIX"]
    keys = Keys(prefix)
    client: Any = redis.Redis.from_url(orch_env["ORCH_REDIS_URL"])  # returns bytes
    svc = Services(state=RedisState(client, prefix), hub=RedisHub(client, prefix), state_dir=tmp_path / "submitter")
    subscriber = Subscriber(redis.Redis.from_url(orch_env["ORCH_REDIS_URL"]), keys.updates)
    listener = threading.Thread(target=subscriber.run, name="load-subscriber", daemon=True)
    listener.start()
    assert subscriber.ready.wait(10)

    # Five waves, one cycle per workspace each; the duplicated workspaces get their fourth cycle in the third
    # wave, sent right after their third. A wave goes once most of the one before has ended, so that most
    # cycles run and some take over a workspace just as the cycle before lets it go.
    waves: list[list[tuple[str, bool]]] = []
    for k in range(WAVES):
        wave = []
        for i, name in enumerate(names):
            if i in DUPLICATED and k == 3:
                continue
            wave.append((name, False))
            if i in DUPLICATED and k == 2:
                wave.append((name, True))
        waves.append(wave)
    cycles: list[Cycle] = []

    def submit(wave: list[tuple[str, bool]]) -> list[Cycle]:
        sent = []
        for name, duplicate in wave:
            ctx = cycle.enqueue(svc, configs[name], trigger="manual")
            send_cycle(ctx, configs[name])
            sent.append(Cycle(ctx.cycle_id, name, duplicate))
        cycles.extend(sent)
        return sent

    def finished(c: Cycle) -> bool:
        # Ended for a reader: the record is closed and `cycle.finished` is in the stream.
        if not client.hexists(keys.cycle(c.cycle_id), "finished_at"):
            return False
        last = client.xrevrange(keys.events(c.cycle_id), count=1)
        return bool(last) and json.loads(last[0][1][b"event"])["kind"] == "cycle.finished"

    with (
        celery_worker(orch_env, tmp_path / "worker-1.log", concurrency=2),
        celery_worker(orch_env, tmp_path / "worker-2.log", concurrency=2),
    ):
        t_ready = time.monotonic()
        deadline = t_ready + RUN_TIMEOUT_S
        live: list[Cycle] = []
        for wave in waves:
            live += submit(wave)
            sent = len(live)
            while time.monotonic() < deadline and len(live := [c for c in live if not finished(c)]) > sent * WAVE_GAP:
                time.sleep(0.05)
        while time.monotonic() < deadline and (live := [c for c in live if not finished(c)]):
            time.sleep(0.05)
        t_done = time.monotonic()
        stuck = live
        details = [
            {
                k.decode(): v.decode()[:300]
                for k, v in client.hgetall(keys.cycle(c.cycle_id)).items()
                if k.decode() in ("status", "reason", "stage", "host", "finished_at", "started_at")
            }
            | {"cycle_id": c.cycle_id}
            for c in stuck
        ]
        logs = "".join((tmp_path / f"worker-{n}.log").read_text()[-2000:] for n in (1, 2))
        assert not stuck, f"cycles not ended in {RUN_TIMEOUT_S} s: {details}\n{logs}"
    ids = {c.cycle_id for c in cycles}

    def all_received() -> bool:
        got = sum(json.loads(payload).get("cycle_id") in ids for _, payload in list(subscriber.received))
        return got >= sum(client.xlen(keys.events(cycle_id)) for cycle_id in ids)

    wait_for(all_received, timeout=10)  # the last messages reach the subscriber
    subscriber.stop.set()
    listener.join(5)
    with contextlib.suppress(Exception):
        app.close()

    assert len(cycles) == WORKSPACES * WAVES
    for c in cycles:
        c.record = {k.decode(): v.decode() for k, v in client.hgetall(keys.cycle(c.cycle_id)).items()}
        c.events = [json.loads(fields[b"event"]) for _id, fields in client.xrange(keys.events(c.cycle_id))]

    # Every cycle ended, once; its events are numbered without gaps; report, record and last event agree.
    problems = []
    for c in cycles:
        kinds = [e["kind"] for e in c.events]
        report = json.loads(c.record["report"])
        last = c.events[-1]
        if [e["seq"] for e in c.events] != list(range(1, len(c.events) + 1)):
            problems.append(f"{c.cycle_id}: seq {[e['seq'] for e in c.events]}")
        if kinds.count("cycle.finished") != 1 or last["kind"] != "cycle.finished":
            problems.append(f"{c.cycle_id}: events end {kinds[-3:]}, {kinds.count('cycle.finished')} cycle.finished")
        record = (c.record.get("status"), c.record.get("reason"))
        if (report["status"], report["reason"]) != record:
            problems.append(f"{c.cycle_id}: report {report['status']}/{report['reason']} but record {record}")
        if (last["data"].get("status"), last["data"].get("reason")) != record:
            problems.append(f"{c.cycle_id}: cycle.finished {last['data']} but record {record}")
        if last["data"].get("report") != report:
            problems.append(f"{c.cycle_id}: the report in cycle.finished differs from the record's")
    assert not problems, "\n".join(problems)

    # What ran succeeded; what did not run found its workspace locked (and was never started).
    outcomes = {c.cycle_id: (c.record["status"], c.record.get("reason")) for c in cycles}
    ran = [c for c in cycles if c.ran]
    locked = [c for c in cycles if not c.ran]
    assert all(outcomes[c.cycle_id] == ("succeeded", None) for c in ran), outcomes
    assert all(outcomes[c.cycle_id] == ("skipped", "locked") for c in locked), outcomes
    assert all(c.first("cycle.skipped") is not None and c.first("agent.started") is None for c in locked)
    assert any(c.workspace in {names[i] for i in DUPLICATED} for c in locked), "no duplicate collided"

    # Mutual exclusion per workspace: the lock-holding spans of the cycles that ran never overlap, nor do their
    # spans from `cycle.started` to `cycle.finished` (a cycle lets its workspace go only once it is closed).
    handover, whole = [], []
    for name in names:
        mine = [c for c in ran if c.workspace == name]
        held = overlaps([(c.cycle_id, *c.held) for c in mine])
        assert not held, f"{name}: two cycles held the workspace at once: {held}"
        handover += overlaps([(c.cycle_id, *c.span("cycle.started")) for c in mine])
        whole += overlaps([(c.cycle_id, *c.span("stage.started", "start")) for c in mine])
    assert not handover, f"a cycle started before the previous one of its workspace had finished: {handover}"

    # Figures.
    wall = t_done - t_ready
    first_queued = min(ts_of(c.record["queued_at"]) for c in cycles)
    last_finished = max(ts_of(c.record["finished_at"]) for c in cycles)
    overhead, in_cycle, queue_wait, agent_s = [], [], [], []
    for c in ran:
        a0, a1 = c.first("agent.started"), c.first("agent.finished")
        assert a0 is not None and a1 is not None, c.cycle_id
        agent = ts_of(a1["ts"]) - ts_of(a0["ts"])
        queued, done = ts_of(c.record["queued_at"]), ts_of(c.record["finished_at"])
        started, ended = c.span("cycle.started")
        agent_s.append(agent)
        overhead.append(done - queued - agent)
        in_cycle.append(ended - started - agent)
        queue_wait.append(started - queued)
    latency = []
    for received, payload in subscriber.received:
        event = json.loads(payload)
        if event.get("cycle_id") in outcomes:
            latency.append((received - ts_of(event["ts"])) * 1000)
    streamed = sum(len(c.events) for c in cycles)
    # Every event reached the live subscriber, quickly (the bound is generous: measured p99 is about 11 ms).
    assert len(latency) == streamed, f"{len(latency)} events received on pub/sub of {streamed} streamed"
    assert pct(latency, 99) < LATENCY_P99_BOUND_MS, f"event latency p99 {pct(latency, 99):.0f} ms"

    print(
        f"\n[load] {len(cycles)} cycles over {WORKSPACES} workspaces, 2 workers x 2: {len(ran)} ran, "
        f"{len(locked)} skipped/locked; setup {t_ready - t_begin:.1f} s, run {wall:.1f} s"
    )
    print(f"[load] throughput: {len(cycles) / wall * 60:.1f} cycles/min ({len(ran) / wall * 60:.1f} that ran)")
    print(f"[load]   first queued -> last finished: {last_finished - first_queued:.1f} s")
    print(
        f"[load] overhead per cycle (queued->finished minus agent): p50 {pct(overhead, 50):.2f} s, "
        f"p99 {pct(overhead, 99):.2f} s"
    )
    print(
        f"[load]   of which in the cycle (cycle.started->cycle.finished minus agent): p50 {pct(in_cycle, 50):.2f} s, "
        f"p99 {pct(in_cycle, 99):.2f} s; queue wait before start: p50 {pct(queue_wait, 50):.2f} s, "
        f"p99 {pct(queue_wait, 99):.2f} s; agent p50 {pct(agent_s, 50):.2f} s"
    )
    print(
        f"[load] event latency (event ts -> pub/sub receive): p50 {pct(latency, 50):.1f} ms, "
        f"p99 {pct(latency, 99):.1f} ms, max {max(latency):.1f} ms; {len(latency)} received of {streamed} streamed"
    )
    print(
        f"[load] spans overlapping within a workspace: lock-held 0; cycle.started->cycle.finished {len(handover)} "
        f"{handover[:5]}; start's stage.started->cycle.finished {len(whole)} {whole[:5]}"
    )
    if handover:
        # The first one as a timeline: the end of the cycle before and the start of the one after.
        by_id = {c.cycle_id: c for c in cycles}
        before, after = by_id[handover[0][0]], by_id[handover[0][1]]
        finish_at = before.first("stage.started", "finish")
        assert finish_at is not None
        rows = [
            (e["ts"], before.cycle_id, e["stage"], e["kind"]) for e in before.events if e["seq"] >= finish_at["seq"]
        ]
        rows += [(e["ts"], after.cycle_id, e["stage"], e["kind"]) for e in after.events[:4]]
        print(f"[load]   {before.workspace}: " + "; ".join(" ".join(row) for row in sorted(rows)))
