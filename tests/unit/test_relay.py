"""The agent loop's events and cancel checks survive a hub that goes away: they wait and go out in order."""

from __future__ import annotations

import threading
import time
from typing import Any

import fakeredis
import redis

from orchestration.agents.relay import Outbox, Poller
from orchestration.hub import RedisHub


class Flaky:
    """An emit that fails with a connection error while `down` is set."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if self.down.is_set():
            raise redis.ConnectionError("Connection refused")
        if kind == "bad":
            raise ValueError("not an event kind")
        self.sent.append((kind, data))


def test_events_put_while_the_hub_is_away_go_out_in_order_when_it_is_back(monkeypatch: Any) -> None:
    monkeypatch.setattr("orchestration.agents.relay.RETRY_S", 0.05)
    hub = Flaky()
    outbox = Outbox(hub)
    outbox.put("agent.message", {"i": 0})
    hub.down.set()
    t0 = time.monotonic()
    for i in range(1, 200):
        outbox.put("agent.message", {"i": i})
    assert time.monotonic() - t0 < 0.5  # putting never waits for the hub
    time.sleep(0.2)
    assert outbox.pending() > 0 and outbox.down_since is not None
    hub.down.clear()
    assert outbox.close(5)
    assert [d["i"] for _, d in hub.sent] == list(range(200))


def test_a_bad_event_is_dropped_alone_and_a_hub_that_never_returns_does_not_block_close(monkeypatch: Any) -> None:
    monkeypatch.setattr("orchestration.agents.relay.RETRY_S", 0.05)
    hub = Flaky()
    outbox = Outbox(hub)
    outbox.put("bad", {})
    outbox.put("agent.message", {"i": 1})
    time.sleep(0.2)
    assert hub.sent == [("agent.message", {"i": 1})]
    hub.down.set()
    outbox.put("agent.message", {"i": 2})
    t0 = time.monotonic()
    assert outbox.close(0.3) is False
    assert time.monotonic() - t0 < 2


def test_the_poller_keeps_its_last_answer_while_the_check_fails() -> None:
    answers: list[object] = [False, True, redis.ConnectionError("gone")]

    def check() -> bool:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return bool(answer)

    poller = Poller(check, every_s=0.02)
    deadline = time.monotonic() + 2
    while not poller.value() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # the check now fails on every poll
    assert poller.value() is True
    poller.stop()


def test_seq_goes_on_above_what_the_emitter_saw_when_redis_lost_its_counter() -> None:
    r = fakeredis.FakeRedis()
    hub = RedisHub(r, "t")
    assert [hub.emit("c1", "ws", "execute", "agent.message", {}).seq for _ in range(3)] == [1, 2, 3]
    r.flushall()  # a restart without persistence
    assert hub.emit("c1", "ws", "execute", "agent.message", {}).seq == 4
    other = RedisHub(r, "t")  # another process emitting for the same cycle reads the counter as it is now
    assert other.emit("c1", "ws", "execute", "agent.message", {}).seq == 5
    assert hub.emit("c1", "ws", "finish", "cycle.finished", {}).seq == 6
