"""Update hub: every event goes to pub/sub `<prefix>:updates` and the cycle's capped stream.

The seq counter, the XADD and the PUBLISH happen in one Lua script, so `seq` is strictly increasing per
cycle and the stream's order is the seq order even when several processes emit for one cycle.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from orchestration.keys import Keys
from orchestration.models import Event, iso, utcnow

if TYPE_CHECKING:
    import redis
from orchestration.redact import default_redactor

STREAM_MAXLEN = 20_000
STREAM_TTL_S = 30 * 86400  # a stream whose cycle never ended still goes away
ENDED_TTL_S = 7 * 86400  # replayable for a week after the cycle ends
TERMINAL_KINDS = frozenset({"cycle.finished"})

# ARGV[4]: the highest seq this emitter has seen for the cycle. A counter lost with Redis's data (a restart
# without persistence) continues above it instead of counting from 1 again.
_EMIT_LUA = """
local seq = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[4])
if seq <= floor then
  seq = floor + 1
  redis.call('SET', KEYS[1], seq)
end
local payload = '{"seq":' .. seq .. ',' .. ARGV[1]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'seq', seq, 'event', payload)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('PUBLISH', KEYS[3], payload)
return payload
"""


class Hub(Protocol):
    def emit(
        self, cycle_id: str, workspace: str, stage: str, kind: str, data: dict[str, Any] | None = None
    ) -> Event: ...


def _draft(cycle_id: str, workspace: str, stage: str, kind: str, data: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "cycle_id": cycle_id,
        "workspace": workspace,
        "seq": 0,
        "ts": iso(utcnow()),
        "stage": stage,
        "kind": kind,
        # Every event of every emitter passes here: the one place that keeps secrets out of the hub.
        "data": default_redactor()(data or {}),
    }


class RedisHub:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.redis: Any = client  # redis-py's unions over decode_responses; this client returns bytes
        self.keys = Keys(prefix)
        self._emit_script = client.register_script(_EMIT_LUA)
        self._seen: dict[str, int] = {}  # cycle id -> the last seq emitted here (for the cycles still going)

    def emit(self, cycle_id: str, workspace: str, stage: str, kind: str, data: dict[str, Any] | None = None) -> Event:
        draft = _draft(cycle_id, workspace, stage, kind, data)
        Event.model_validate(draft)  # refuse an unknown kind before it reaches anyone
        ttl = ENDED_TTL_S if kind in TERMINAL_KINDS else STREAM_TTL_S
        # The script splices seq into the JSON text: no cjson round trip (it turns [] into {}, mangles floats)
        draft.pop("seq")
        body = orjson.dumps(draft)[1:]
        payload = self._emit_script(
            keys=[self.keys.seq(cycle_id), self.keys.events(cycle_id), self.keys.updates],
            args=[body, STREAM_MAXLEN, ttl, self._seen.get(cycle_id, 0)],
        )
        event = Event.model_validate_json(payload)
        if kind in TERMINAL_KINDS:
            self._seen.pop(cycle_id, None)
        else:
            if len(self._seen) >= 10_000:  # cycles whose end this process never saw
                self._seen.clear()
            self._seen[cycle_id] = event.seq
        return event

    def replay(self, cycle_id: str, after: str = "0-0", count: int = 1000) -> list[tuple[str, Event]]:
        """Stream entries after the given stream id, oldest first."""
        rows = self.redis.xrange(self.keys.events(cycle_id), min=f"({after}" if after != "0-0" else "-", count=count)
        return [(_text(entry_id), _event_of(fields)) for entry_id, fields in rows]

    def follow(self, cycle_id: str, block_ms: int = 1000, stop: Callable[[], bool] | None = None) -> Iterator[Event]:
        """Replays the stream from the start, then blocks for new entries until `cycle.finished`."""
        last = "0-0"
        key = self.keys.events(cycle_id)
        while True:
            resp = self.redis.xread({key: last}, count=500, block=block_ms)
            for _stream, rows in resp or []:
                for entry_id, fields in rows:
                    last = _text(entry_id)
                    event = _event_of(fields)
                    yield event
                    if event.kind in TERMINAL_KINDS:
                        return
            if stop is not None and stop():
                return

    def subscribe_all(self, stop: Callable[[], bool] | None = None) -> Iterator[Event]:
        """Follows every cycle's events live on the pub/sub channel until stopped."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self.keys.updates)
        try:
            while stop is None or not stop():
                msg = pubsub.get_message(timeout=1.0)
                if msg and msg.get("type") == "message":
                    try:
                        yield Event.model_validate_json(msg["data"])
                    except ValueError:
                        continue
        finally:
            pubsub.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _event_of(fields: dict[Any, Any]) -> Event:
    raw = fields.get(b"event", fields.get("event"))
    return Event.model_validate_json(raw if isinstance(raw, bytes | str) else b"{}")


class LocalHub:
    """For `run --local`: events go to a printer and to a JSONL file under the state dir."""

    def __init__(self, directory: Path, printer: Callable[[Event], None] | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.printer = printer
        self._seq: dict[str, int] = {}
        self._lock = threading.Lock()

    def path(self, cycle_id: str) -> Path:
        return self.dir / f"{cycle_id}.events.jsonl"

    def emit(self, cycle_id: str, workspace: str, stage: str, kind: str, data: dict[str, Any] | None = None) -> Event:
        with self._lock:
            seq = self._seq.get(cycle_id, 0) + 1
            self._seq[cycle_id] = seq
            draft = _draft(cycle_id, workspace, stage, kind, data)
            draft["seq"] = seq
            event = Event.model_validate(draft)
            with self.path(cycle_id).open("ab") as fh:
                fh.write(orjson.dumps(draft) + b"\n")
        if self.printer is not None:
            try:
                self.printer(event)
            except Exception as exc:  # a broken terminal must not break the cycle
                print(f"orchestrate: cannot print event: {exc}", file=sys.stderr)
        return event
