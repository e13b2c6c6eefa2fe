"""Hub and state on fakeredis (fast); the real-Redis path is covered by the integration tests."""

from __future__ import annotations

import threading
from pathlib import Path

import fakeredis
import pytest

from orchestration.hub import LocalHub, RedisHub
from orchestration.state import LocalState, RedisState


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
    assert 0 < r.ttl("t:cycle:c2:events") <= 30 * 86400


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
    state.put_cycle(
        "c1", {"cycle_id": "c1", "workspace": "ws", "status": "queued", "queued_at_ts": 1.0, "ctx": {"a": [1]}}
    )
    state.put_cycle("c1", {"status": "running", "reason": None})
    rec = state.get_cycle("c1")
    assert rec is not None and rec["status"] == "running" and rec["ctx"] == {"a": [1]}
    assert [c["cycle_id"] for c in state.recent_cycles("ws")] == ["c1"]
    assert state.add_spend("ws", "2026-11-25", 0.5) == pytest.approx(0.5)
    state.add_spend("ws", "2026-11-25", 0.25)
    assert state.get_spend("ws", "2026-11-25") == pytest.approx(0.75)
    state.record_task("ws", {"op_hash": "h1", "status": "succeeded", "at": 100.0})
    assert state.task_history("ws", 50.0)[0]["op_hash"] == "h1"
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
