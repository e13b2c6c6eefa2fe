"""Which broker messages a dead worker held and are given back, and the per-worker heartbeats they are
judged by; the transport giving nothing back on a torn-down connection. The real give-back on a real Redis
broker is in tests/integration/test_fleet.py."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from types import SimpleNamespace

import fakeredis
import orjson

from orchestration.models import WorkerBeat
from orchestration.state import RedisState
from tasks.broker import Unacked, _QoS, orphans, parse_unacked

NOW = 10_000.0
TTL = 45.0


def beat(host: str, *held: str, at: float = NOW - 5) -> WorkerBeat:
    return WorkerBeat(host=host, node=f"w@{host}", held=list(held), at=at)


def msg(tag: str, age: float, cycle: str | None = "c1", eta: float | None = None) -> Unacked:
    return Unacked(tag=tag, taken_at=NOW - age, cycle_id=cycle, eta=eta)


def test_a_message_no_live_worker_holds_is_given_back_once_it_is_old_enough() -> None:
    live = {"c1", "c2"}.__contains__
    beats = [beat("a", "t-held")]
    messages = [
        msg("t-held", 300),  # held by a live worker: it is working on it
        msg("t-orphan", 300),  # nobody holds it: its worker died
        msg("t-young", 10),  # just taken: its worker may not have said so yet
        msg("t-ended", 300, cycle="c-gone"),  # its cycle is over: nothing to resume
        msg("t-foreign", 300, cycle=None),  # not one of our stage tasks
        msg("t-eta", 300, eta=NOW + 30),  # a delayed start its worker still waits for
        msg("t-eta-past", 300, cycle="c2", eta=NOW - 100),
    ]
    assert orphans(messages, beats, NOW, TTL, live) == ["t-orphan", "t-eta-past"]


def test_nothing_is_given_back_without_heartbeats_or_before_every_worker_has_beaten_since() -> None:
    assert orphans([msg("t", 300)], [], NOW, TTL, lambda _: True) == []
    # a live worker whose last beat is older than the message may hold it without having said so
    stale = [beat("a", at=NOW - 400)]
    assert orphans([msg("t", 300)], stale, NOW, TTL, lambda _: True) == []


def raw_message(task: str, args: list[object], eta: str | None = None, encode: bool = True) -> bytes:
    body = orjson.dumps([args, {}, {}])
    payload = {
        "body": base64.b64encode(body).decode() if encode else body.decode(),
        "headers": {"task": task, "eta": eta},
        "properties": {"body_encoding": "base64" if encode else "utf-8"},
    }
    return orjson.dumps([payload, "orchestrate", "orchestrate"])


def test_messages_are_read_for_their_cycle_and_eta_and_garbage_is_no_cycle() -> None:
    eta = datetime(2026, 1, 1, tzinfo=UTC)
    got = parse_unacked("t", 5.0, raw_message("orchestrate.start", [{"cycle_id": "c9"}], eta.isoformat()))
    assert got == Unacked("t", 5.0, "c9", eta.timestamp())
    plain = parse_unacked("t", 5.0, raw_message("orchestrate.finish", [{"cycle_id": "c9"}], encode=False))
    assert plain.cycle_id == "c9" and plain.eta is None
    for bad in (
        None,
        b"not json",
        b"[1, 2]",
        raw_message("other.task", [{"cycle_id": "c9"}]),  # another app's task on the same broker
        raw_message("orchestrate.start", []),
        raw_message("orchestrate.start", ["c9"]),
        orjson.dumps([{"headers": {"task": "orchestrate.start"}, "body": "%%%"}, "", ""]),
    ):
        assert parse_unacked("t", 5.0, bad).cycle_id is None, bad


def test_two_workers_on_one_host_keep_their_own_heartbeat() -> None:
    state = RedisState(fakeredis.FakeRedis(), "t")
    state.beat(WorkerBeat(host="box", node="a@box", held=["1"], at=NOW), 30)
    state.beat(WorkerBeat(host="box", node="b@box", held=["2"], at=NOW), 30)
    state.beat(WorkerBeat(host="other", node="a@other", at=NOW), 30)
    beats = state.workers()
    assert [(b.host, b.node, b.held) for b in beats] == [
        ("box", "a@box", ["1"]),
        ("box", "b@box", ["2"]),
        ("other", "a@other", []),
    ]
    assert state.host_alive("box") and state.host_alive("other") and not state.host_alive("bo")


def test_giving_back_unacked_messages_on_a_torn_down_connection_does_nothing() -> None:
    """Kombu gives a channel's unacknowledged messages back when the channel closes. After a Redis restart
    the connection is already torn down by then, and kombu's own attempt would raise (an AttributeError,
    which stops the worker); the transport does nothing instead: the messages stay in the unacked hash."""
    for connection in (None, SimpleNamespace(client=None)):
        qos = _QoS(SimpleNamespace(connection=connection, do_restore=False))  # nothing to give back at exit
        assert qos.restore_unacked() is None
