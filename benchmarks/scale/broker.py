"""How many stage messages a second the broker path carries: sender → Redis → a prefork worker (concurrency 2)
running a no-op stage (`benchmarks/scale/broker_app.py`) → its result stored.

For each Celery configuration (the product's: `tasks.app.STATIC_CONF` with its Redis transport; Celery's
defaults with kombu's) a worker of its own is started and warmed up (20 messages), then `n` messages are sent
from this process with the same configuration, first with a real stage's context (a `CycleContext` of a cycle
halfway through the example pipeline `tests-then-pr`, its error path named as every stage message names it),
then with a tiny one. Sending rate: `n` / the time of the sending loop alone. End to end: `n` / (first send →
the last task's end, as the worker stamps it).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import redis

from benchmarks.scale.broker_app import DONE_KEY, QUEUE, make_app
from benchmarks.scale.procs import REPO, spawned, wait_for

CONFS = ("product", "default")


def real_context() -> dict[str, Any]:
    """A cycle's context as it travels between stages once the agent has run (before publish)."""
    from orchestration.config import parse_config
    from orchestration.models import AgentResult, AgentTokens, CycleContext, Decision, Status, StepReport, StepStatus

    example = REPO / "examples" / "pipelines" / "tests-then-pr.json"
    cfg = parse_config(json.loads(example.read_text()), str(example), example.parent)
    planned = cfg.pipeline if isinstance(cfg.pipeline, list) else []
    steps = [
        StepReport(op=s.op, status=StepStatus.SUCCEEDED if i < 2 else StepStatus.PENDING) for i, s in enumerate(planned)
    ]
    ctx = CycleContext(
        cycle_id="20261202T010000-acme-api-tests-then-pr-3f9c2a",
        workspace=cfg.id,
        config=cfg.model_dump(mode="json"),
        trigger="schedule",
        queued_at="2026-12-02T01:00:00.120000+00:00",
        started_at="2026-12-02T01:00:01.480000+00:00",
        deadline=1796181601.48,
        lock_token="6d1f0c2b9a8e4f7d",
        status=Status.RUNNING,
        decision=Decision(
            title="Fix the flaky upload test",
            task="Find why test_upload_large fails one run in ten and fix it. " * 3,
            agent="claude-code",
            rationale="Goal 1; the last 5 CI runs show the failure twice. " * 2,
            op_hash="a41c9e0b7d2f",
            source="llm",
            confidence=0.8,
        ),
        branch="orchestrate/20261202-fix-flaky-upload-test",
        base_sha="4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        worktree="/var/lib/orchestrate/worktrees/acme-api/20261202T010000-3f9c2a",
        host="build-07",
        agent=AgentResult(
            status="succeeded",
            exit_code=0,
            session_id="0d9f6a4e-5b1c-4f0e-9a43-2b7e1c8d6f10",
            num_turns=23,
            cost_usd=0.84,
            tokens=AgentTokens(input=182000, output=9100, cached=150000),
            files_changed=["tests/test_upload.py", "api/upload.py", "api/storage.py"],
            summary="The test raced the background flush; it now waits on the flush event. " * 3,
            stop_reason="end_turn",
            commit="9fceb02d0ae598e95dc970b74767f19372d61af8",
            events=412,
            worked=True,
        ),
        steps=steps,
        outputs={"1": {"summary": "2 files changed", "passed": 148, "failed": 0}},
        step=2,
        spent_usd=0.84,
    )
    return ctx.model_dump(mode="json")


TINY: dict[str, Any] = {"cycle_id": "c0"}


def message_bytes(app: Any, client: redis.Redis, payload: dict[str, Any]) -> int:
    """The size of one stage message as the broker stores it."""
    client.delete("bench-size")
    app.send_task(
        "bench.step",
        args=(payload,),
        kwargs={"step": 2},
        queue="bench-size",
        link_error=app.signature("bench.on_error"),
    )
    raw = client.lindex("bench-size", 0)
    client.delete("bench-size")
    return len(raw or b"")


def send_and_wait(app: Any, client: redis.Redis, payload: dict[str, Any], n: int) -> dict[str, float]:
    errback = app.signature("bench.on_error")
    client.delete(DONE_KEY)
    t0 = time.time()
    for i in range(n):
        app.send_task("bench.step", args=(payload,), kwargs={"step": i % 5}, queue=QUEUE, link_error=errback)
    sent = time.time()
    if not wait_for(lambda: int(client.llen(DONE_KEY)) >= n, 600, 0.05):
        raise RuntimeError(f"the worker did {client.llen(DONE_KEY)} of {n} messages in 600 s")
    last = max(float(x) for x in client.lrange(DONE_KEY, 0, -1))
    return {"send_per_s": n / (sent - t0), "end_to_end_per_s": n / (last - t0), "end_to_end_s": last - t0}


def broker_throughput(base: Path, url: str, n: int) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    real = real_context()
    out: dict[str, Any] = {"messages": n, "context_json_bytes": len(json.dumps(real))}
    for conf in CONFS:
        app = make_app(conf, url)
        out[conf] = {
            "message_bytes": {"real": message_bytes(app, client, real), "tiny": message_bytes(app, client, TINY)}
        }
        argv = [sys.executable, "-m", "celery", "-A", "benchmarks.scale.broker_app", "worker", "-P", "prefork",
                "-c", "2", "-Q", QUEUE, "--loglevel", "INFO", "-n", f"bench-{conf}@%h"]  # fmt: skip
        if conf == "product":
            argv.append("-E")  # `orchestrate worker` sends task events
        env = {"BENCH_BROKER_URL": url, "BENCH_CONF": conf}
        with spawned(argv, env, base / f"worker-{conf}.log"):
            send_and_wait(app, client, TINY, 20)  # the worker is up, both children have run a task
            for name, payload in (("real", real), ("tiny", TINY)):
                out[conf][name] = send_and_wait(app, client, payload, n)
        app.close()
        client.flushdb()
    return out


def report(out: dict[str, Any]) -> None:
    n = out["messages"]
    print(f"broker: {n} stage messages to a prefork worker (-c 2) running a no-op stage; context JSON "
          f"{out['context_json_bytes'] / 1024:.1f} KiB")  # fmt: skip
    for conf in CONFS:
        for name in ("real", "tiny"):
            r = out[conf][name]
            size = out[conf]["message_bytes"][name]
            print(f"  {conf:>7} settings, {name:>4} message ({size / 1024:.1f} KiB): sent {r['send_per_s']:.0f}/s, "
                  f"end to end {r['end_to_end_per_s']:.0f}/s ({r['end_to_end_s']:.2f} s)")  # fmt: skip
    p, d = out["product"]["real"], out["default"]["tiny"]
    print(f"  product+real vs default+tiny: end to end x{p['end_to_end_per_s'] / d['end_to_end_per_s']:.2f}, "
          f"sending x{p['send_per_s'] / d['send_per_s']:.2f}")  # fmt: skip
    pairs = (
        ("product vs default settings, real message", out["product"]["real"], out["default"]["real"]),
        ("real vs tiny message, product settings", out["product"]["real"], out["product"]["tiny"]),
    )
    for label, a, b in pairs:
        print(f"  {label}: end to end x{a['end_to_end_per_s'] / b['end_to_end_per_s']:.2f}, "
              f"sending x{a['send_per_s'] / b['send_per_s']:.2f}")  # fmt: skip
