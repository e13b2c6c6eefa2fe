"""Messages a dead worker took from the Redis broker, given back to their queue.

With late acknowledgement a worker holds each message it has taken until the task ends. RabbitMQ hands
a dead worker's messages to the others as soon as its connection drops; Redis keeps them in its `unacked`
hash until the transport's visibility timeout (hours) runs out, so a step taken by a worker that was then
SIGKILLed would wait that long, and its cycle with it. Each worker's heartbeat says which messages it holds
(`held_tags`); a live worker's janitor gives back (`restore_orphans`) the ones of our live cycles that no
live worker holds.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import redis
from kombu.transport import redis as kombu_redis

from orchestration.models import WorkerBeat
from orchestration.services import Services
from tasks.app import app

log = logging.getLogger(__name__)


def held_tags() -> list[str]:
    """The delivery tags of the messages this worker process has taken and not acknowledged yet."""
    from celery.worker import state

    for _ in range(3):  # the set changes under us while tasks come and go
        try:
            return sorted(str(r.message.delivery_tag) for r in list(state.reserved_requests))
        except RuntimeError:
            continue
    return []


@dataclass(frozen=True)
class Unacked:
    """One message in the broker's `unacked` hash: who it is for and since when it is out."""

    tag: str
    taken_at: float
    cycle_id: str | None
    eta: float | None


def orphans(
    unacked: Iterable[Unacked], beats: list[WorkerBeat], now: float, ttl_s: float, live: Callable[[str], bool]
) -> list[str]:
    """The tags to give back: messages of live cycles that no live worker says it holds. A message counts
    only once it is older than a heartbeat's lifetime and than every live worker's last beat, so that a
    message taken just now, not yet in its worker's heartbeat, is never given back twice; a message whose
    ETA is still ahead (a jittered start) is left to the worker that waits for it."""
    if not beats:  # no heartbeats to judge by (workers of an older version, Redis just flushed)
        return []
    held = {tag for beat in beats for tag in beat.held}
    oldest_beat = min(beat.at for beat in beats)
    out = []
    for msg in unacked:
        if msg.tag in held or msg.cycle_id is None:
            continue
        if msg.taken_at > min(now - ttl_s, oldest_beat - 1):
            continue
        if msg.eta is not None and msg.eta > now - ttl_s:
            continue
        if live(msg.cycle_id):
            out.append(msg.tag)
    return out


def parse_unacked(tag: str, taken_at: float, raw: bytes | str | None) -> Unacked:
    """Reads the cycle id (the first argument of every stage task) and the ETA of a message as Redis
    stores it; anything unreadable gives a message of no cycle, which is never touched."""
    cycle_id: str | None = None
    eta: float | None = None
    try:
        payload, _exchange, _routing_key = orjson.loads(raw or b"null")
        headers = payload.get("headers") or {}
        if str(headers.get("task", "")).startswith("orchestrate."):
            body = payload["body"]
            if payload.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            args, kwargs, _embed = orjson.loads(body)
            ctx = args[0] if args else kwargs.get("ctx")
            if isinstance(ctx, dict) and isinstance(ctx.get("cycle_id"), str):
                cycle_id = ctx["cycle_id"]
        if headers.get("eta"):
            eta = datetime.fromisoformat(str(headers["eta"])).timestamp()
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):  # JSON and base64 errors are ValueErrors
        cycle_id = None
    return Unacked(tag, taken_at, cycle_id, eta)


def restore_orphans(svc: Services, ttl_s: float, now: float | None = None) -> list[str]:
    """Puts the messages a dead worker held back on their queues (Redis broker only), so that a live worker
    takes the step up; returns the cycle ids resumed."""
    from orchestration.settings import get_settings

    if get_settings().broker_is_amqp:
        return []  # RabbitMQ gives them back itself
    now = time.time() if now is None else now
    beats = svc.state.workers()
    resumed = []
    with app.connection_for_write() as conn:
        channel: Any = conn.default_channel
        qos, client = channel.qos, channel.client
        index = client.zrangebyscore(channel.unacked_index_key, 0, now - ttl_s, withscores=True)
        if not index:
            return []
        tags = [t.decode() if isinstance(t, bytes) else str(t) for t, _ in index]
        raws = client.hmget(channel.unacked_key, tags)
        unacked = {
            tag: parse_unacked(tag, score, raw) for (tag, (_, score), raw) in zip(tags, index, raws, strict=True)
        }

        def live(cycle_id: str) -> bool:
            record = svc.state.get_cycle(cycle_id)
            return record is not None and record.live

        for tag in orphans(unacked.values(), beats, now, ttl_s, live):
            qos.restore_by_tag(tag, client=client, leftmost=True)
            resumed.append(str(unacked[tag].cycle_id))
            log.warning("cycle %s: gave its step back to the queue; the worker that took it is gone", resumed[-1])
    return resumed


# -- the Redis transport --------------------------------------------------------------------------------


class _QoS(kombu_redis.QoS):
    def restore_unacked(self, client: Any = None) -> Any:
        """Kombu gives the channel's unacknowledged messages back when the channel closes. When Redis went
        away, the connection is already torn down by then and kombu's attempt fails with an AttributeError,
        which Celery takes as unrecoverable: the worker would stop, with its steps still running, at every
        Redis restart. There is nothing to give back to while Redis is away anyway: the messages stay in the
        broker's unacked hash, the steps that hold them finish, and `restore_orphans` gives back any that no
        live worker holds."""
        connection = self.channel.connection
        if connection is None or getattr(connection, "client", None) is None:
            return None
        return super().restore_unacked(client)  # type: ignore[no-untyped-call]


class _Channel(kombu_redis.Channel):
    QoS = _QoS
    _saved_params: dict[bool, dict[str, Any]] | None = None

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        """Kombu reads the Redis address off the live connection. A step that ends after Redis came back
        acknowledges its message on the channel it came from, closed meanwhile: without the address kept
        here that fails with an AttributeError, which Celery takes as unrecoverable (and the message would
        stay unacknowledged)."""
        connection = self.connection
        if connection is None or getattr(connection, "client", None) is None:
            saved = (self._saved_params or {}).get(asynchronous)
            if saved is None:
                raise redis.ConnectionError("the broker connection is closed")
            return dict(saved)
        params: dict[str, Any] = super()._connparams(asynchronous)  # type: ignore[no-untyped-call]
        self._saved_params = {**(self._saved_params or {}), asynchronous: dict(params)}
        return params


class RedisTransport(kombu_redis.Transport):
    """Kombu's Redis transport, surviving a Redis restart while tasks run (see `_QoS.restore_unacked`)."""

    Channel = _Channel
