"""Hub and state on fakeredis (fast); the real-Redis path is covered by the integration tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import fakeredis
import pytest

from orchestration.hub import LocalHub, RedisHub
from orchestration.keys import Keys
from orchestration.models import CycleContext, CycleRecord, Reason, Status, TaskRecord
from orchestration.state import LocalState, LockHold, RedisState


@pytest.fixture
def r() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def test_seq_strictly_increasing_under_concurrency(r: fakeredis.FakeRedis) -> None:
    hub = RedisHub(r, "t")

    def burst() -> None:
        for i in range(50):
            hub.emit("c1", "ws", "execute", "agent.message", {"text": f"m{i}", "list": []})

    threads = [threading.Thread(target=burst) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = [e for _, e in hub.replay("c1", count=1000)]
    assert [e.seq for e in events] == list(range(1, 201))
    assert events[0].data["list"] == []


def test_follow_stops_at_cycle_finished_and_streams_expire(r: fakeredis.FakeRedis) -> None:
    hub = RedisHub(r, "t")
    hub.emit("c2", "ws", "start", "cycle.started", {})
    hub.emit("c2", "ws", "finish", "cycle.finished", {"status": "succeeded"})
    hub.emit("c2", "ws", "finish", "agent.message", {"text": "after the end"})
    kinds = [e.kind for e in hub.follow("c2", block_ms=10)]
    assert kinds == ["cycle.started", "cycle.finished"]
    assert 0 < r.ttl(Keys("t").events("c2")) <= 30 * 86400


def test_unknown_event_kind_is_refused(r: fakeredis.FakeRedis) -> None:
    with pytest.raises(ValueError):
        RedisHub(r, "t").emit("c3", "ws", "start", "bogus.kind", {})


@pytest.fixture(params=["redis", "local"])
def state(request: pytest.FixtureRequest, r: fakeredis.FakeRedis, tmp_path: Path) -> RedisState | LocalState:
    return RedisState(r, "t") if request.param == "redis" else LocalState(tmp_path)


def test_lock_is_exclusive_and_released_by_token(state: RedisState | LocalState) -> None:
    token = state.acquire_lock("ws", 60)
    assert token
    assert state.acquire_lock("ws", 60) is None
    assert state.release_lock("ws", "not-the-token") is False
    assert state.acquire_lock("ws", 60) is None
    assert state.release_lock("ws", token) is True
    assert state.acquire_lock("ws", 60)


def test_records_spend_history_backlog_cancel(state: RedisState | LocalState) -> None:
    ctx = CycleContext(cycle_id="c1", workspace="ws", config={"a": [1]}, queued_at="2026-11-25T01:00:00.000Z")
    state.save_cycle(CycleRecord(ctx=ctx, host="h1", agent_pgid=42))
    ctx.status, ctx.reason = Status.SKIPPED, Reason.LOCKED
    state.save_cycle(CycleRecord(ctx=ctx))
    rec = state.get_cycle("c1")
    assert rec is not None and rec.status is Status.SKIPPED and rec.ctx.reason is Reason.LOCKED
    assert rec.ctx.config == {"a": [1]} and rec.host is None and rec.agent_pgid is None
    assert [c.cycle_id for c in state.recent_cycles("ws")] == ["c1"]
    assert state.get_cycle("missing") is None
    assert state.add_spend("ws", "2026-11-25", 0.5) == pytest.approx(0.5)
    state.add_spend("ws", "2026-11-25", 0.25)
    assert state.get_spend("ws", "2026-11-25") == pytest.approx(0.75)
    state.record_task("ws", TaskRecord(op_hash="h1", status="succeeded", at=100.0))
    assert state.task_history("ws", 50.0)[0].op_hash == "h1"
    assert state.task_history("ws", 150.0) == []
    state.push_backlog("ws", "first")
    state.push_backlog("ws", "second")
    assert state.list_backlog("ws") == ["first", "second"]
    assert state.pop_backlog("ws") == "first"
    assert not state.is_cancelled("c1")
    state.request_cancel("c1")
    assert state.is_cancelled("c1")
    assert state.mark_once("c1", "spend") is True
    assert state.mark_once("c1", "spend") is False


def test_local_hub_numbers_and_prints(tmp_path: Path) -> None:
    seen = []
    hub = LocalHub(tmp_path, seen.append)
    hub.emit("c", "ws", "start", "cycle.started", {})
    hub.emit("c", "ws", "finish", "cycle.finished", {})
    assert [e.seq for e in seen] == [1, 2]
    assert len(hub.path("c").read_text().splitlines()) == 2


def test_the_hash_carries_the_record_for_readers_outside(r: fakeredis.FakeRedis) -> None:
    """Tools that read `<prefix>:cycle:<id>` see the status, reason and report as plain fields."""
    state = RedisState(r, "t")
    ctx = CycleContext(cycle_id="c9", workspace="ws", config={}, queued_at="2026-11-25T01:00:00.000Z")
    ctx.status, ctx.reason = Status.FAILED, Reason.POLICY_DENIED
    state.save_cycle(CycleRecord(ctx=ctx, finished_at="2026-11-25T01:01:00.000Z"))
    raw = {k.decode(): v.decode() for k, v in r.hgetall(Keys("t").cycle("c9")).items()}
    assert raw["status"] == "failed" and raw["reason"] == "policy_denied" and raw["workspace"] == "ws"
    assert raw["finished_at"] == "2026-11-25T01:01:00.000Z" and "host" not in raw
    assert r.zscore(Keys("t").cycles("ws"), "c9") == pytest.approx(datetime(2026, 11, 25, 1, tzinfo=UTC).timestamp())


def test_unreadable_records_and_history_rows_are_skipped(r: fakeredis.FakeRedis, tmp_path: Path) -> None:
    """Anyone who can write Redis (or an older version) may leave rows of another shape: skipped, never fatal."""
    state = RedisState(r, "t")
    r.hset(Keys("t").cycle("bad"), mapping={"ctx": "not json", "status": "running"})
    r.zadd(Keys("t").cycles("ws"), {"bad": 1.0})
    assert state.get_cycle("bad") is None and state.recent_cycles("ws") == []
    r.zadd(Keys("t").tasks("ws"), {"garbage": 100.0, '{"op_hash": 7}': 100.0, '{"title": "x"}': 100.0})
    state.record_task("ws", TaskRecord(op_hash="h1", status="failed", at=100.0))
    assert [t.op_hash for t in state.task_history("ws", 0.0)] == ["h1"]
    local = LocalState(tmp_path)
    (tmp_path / "tasks-ws.json").write_text('[{"op_hash": 7}, "x", {"op_hash": "h2", "at": 5}]')
    assert [t.op_hash for t in local.task_history("ws", 0.0)] == ["h2"]


def test_a_lock_gone_with_redis_s_data_is_taken_again_by_its_holder_only(tmp_path: Path) -> None:
    for state in (RedisState(fakeredis.FakeRedis(), "t"), LocalState(tmp_path / "local")):
        token = state.acquire_lock("ws", 60)
        assert token is not None
        assert state.hold_lock("ws", token, 60) is LockHold.HELD
        assert state.release_lock("ws", token)  # as if Redis lost the key
        assert state.hold_lock("ws", token, 60) is LockHold.RETAKEN
        assert state.acquire_lock("ws", 60) is None  # the workspace is held again: no other cycle starts
        assert state.hold_lock("ws", "someone-else", 60) is LockHold.LOST
        assert state.release_lock("ws", token)
