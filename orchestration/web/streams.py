"""Server-Sent Events from the update hub: one cycle's stream, and every cycle's live channel.

One cycle (`GET /api/cycles/{id}/events`) is read from its Redis stream, never from pub/sub: replay and
follow are the same `XREAD` from one cursor (the id of the last entry sent), so there is no seam where an
event published while the replay ran could be missed or sent twice. An event's SSE `id` is its `seq`; a
client resuming with `Last-Event-ID` gets the events whose seq is higher, and the seq is checked on every
entry, so nothing is sent twice even if the cursor were to go back. Entries are read in small batches and
only when the previous ones have been written to the client (the server's `send` waits while the socket's
buffer is full), so a slow client holds at most one batch in memory, however fast the cycle publishes.

Every cycle (`GET /api/events`) is the pub/sub channel, which Redis pushes whether or not a client keeps up:
one subscription per server fans out to each client's buffer of at most `BUFFER` events. When a client's
buffer is full the oldest event is dropped, and before the next event the client gets an `overflow` event
saying how many it lost (the page then reloads its table from `/api/cycles`). A per-cycle stream never
loses anything, so a client that must see every event of a cycle follows that cycle instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from sse_starlette import ServerSentEvent

from orchestration.hub import TERMINAL_KINDS
from orchestration.redact import Redactor

log = logging.getLogger(__name__)

BATCH = 100  # stream entries read at once: what a slow client can hold in this server's memory
BLOCK_MS = 5000  # how long one XREAD waits for new entries before the cycle's record is looked at
BUFFER = 1000  # events of `/api/events` kept for one client that does not keep up
# A cycle whose record is closed and whose stream has had nothing new for this many XREAD waits is over,
# even without `cycle.finished` in its stream (trimmed, or closed without an announcement).
QUIET_AFTER_CLOSE = 2


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def masked_event(raw: bytes | str, redactor: Redactor) -> tuple[str, dict[str, Any]] | None:
    """The hub's event JSON as it is sent (masked again with this server's secrets, which a worker may not
    know: the JSON is rewritten only when something was masked), and the event parsed; None when unreadable."""
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict):
        return None
    masked = redactor(event)
    text = _text(raw) if masked == event else orjson.dumps(masked).decode()
    return text, masked


def as_sse(text: str, event: dict[str, Any]) -> ServerSentEvent:
    """An event of the hub as one SSE message: `id` its seq, the data its JSON (one line: JSON has no raw
    newline in it)."""
    seq = event.get("seq")
    return ServerSentEvent(data=text, id=str(seq) if isinstance(seq, int) else None)


async def cycle_events(
    client: Any,
    stream_key: str,
    after_seq: int,
    closed: Callable[[], Awaitable[bool]],
    redactor: Redactor,
    block_ms: int = BLOCK_MS,
) -> AsyncIterator[ServerSentEvent]:
    """The cycle's events with a seq above `after_seq`, oldest first: first those already in the stream, then
    each one as it is added, until `cycle.finished` (or the record is closed and the stream stays quiet)."""
    cursor = "0-0"
    quiet = 0
    while True:
        reply = await client.xread({stream_key: cursor}, count=BATCH, block=block_ms)
        rows = reply[0][1] if reply else []
        if not rows:
            quiet = quiet + 1 if await closed() else 0
            if quiet >= QUIET_AFTER_CLOSE:
                return
            continue
        quiet = 0
        for entry_id, fields in rows:
            cursor = _text(entry_id)
            try:
                seq = int(fields.get(b"seq", fields.get("seq", 0)))
            except (TypeError, ValueError):
                continue
            if seq <= after_seq:
                continue
            raw = fields.get(b"event", fields.get("event"))
            parsed = masked_event(raw, redactor) if isinstance(raw, bytes | str) else None
            if parsed is None:
                continue
            after_seq = seq
            text, event = parsed
            yield as_sse(text, event)
            if event.get("kind") in TERMINAL_KINDS:
                return


async def last_seq(client: Any, stream_key: str) -> int | None:
    """The seq of the stream's newest entry; None for an empty or missing stream."""
    rows = await client.xrevrange(stream_key, count=1)
    if not rows:
        return None
    try:
        return int(rows[0][1].get(b"seq", 0))
    except (TypeError, ValueError):
        return None


class Subscriber:
    """One client of `/api/events`: a bounded buffer, and how many events it lost since it last read."""

    def __init__(self, size: int = BUFFER) -> None:
        self.buffer: deque[bytes] = deque(maxlen=size)
        self.dropped = 0
        self.wake = asyncio.Event()

    def put(self, payload: bytes) -> None:
        if len(self.buffer) == self.buffer.maxlen:
            self.dropped += 1  # deque drops the oldest
        self.buffer.append(payload)
        self.wake.set()

    def lost(self, count: int = 1) -> None:
        """Events went by unseen (the server's subscription broke off and was made again)."""
        self.dropped += count
        self.wake.set()


class Fanout:
    """One subscription to `<prefix>:updates` for the whole server, copied into each client's buffer. It
    runs while anyone listens, and subscribes again (telling each client it may have lost events) when the
    connection to Redis breaks."""

    def __init__(self, client: Any, channel: str, size: int = BUFFER) -> None:
        self.client = client
        self.channel = channel
        self.size = size
        self.subscribers: set[Subscriber] = set()
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscriber]:
        sub = Subscriber(self.size)
        self.subscribers.add(sub)
        if self.task is None or self.task.done():
            self.ready = asyncio.Event()
            self.task = asyncio.get_running_loop().create_task(self._run())
        try:
            await asyncio.wait_for(self.ready.wait(), timeout=10)
        except TimeoutError:
            sub.lost()  # not subscribed yet: say so rather than pretend nothing happened
        try:
            yield sub
        finally:
            self.subscribers.discard(sub)

    async def _run(self) -> None:
        while self.subscribers:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.ready.set()
                while self.subscribers:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg and msg.get("type") == "message":
                        for sub in tuple(self.subscribers):
                            sub.put(msg["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("the live channel broke off (%s); subscribing again", exc)
                for sub in tuple(self.subscribers):
                    sub.lost()
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def close(self) -> None:
        self.subscribers.clear()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


async def all_events(fanout: Fanout, redactor: Redactor) -> AsyncIterator[ServerSentEvent]:
    """Every cycle's events as they are published, until the client goes away; an `overflow` event (data:
    `{"dropped": N}`) stands where events were lost."""
    async with fanout.subscribe() as sub:
        while True:
            await sub.wake.wait()
            sub.wake.clear()
            if sub.dropped:
                dropped, sub.dropped = sub.dropped, 0
                yield ServerSentEvent(data=orjson.dumps({"dropped": dropped}).decode(), event="overflow")
            while sub.buffer:
                parsed = masked_event(sub.buffer.popleft(), redactor)
                if parsed is not None:
                    # No SSE id: seq counts one cycle's events, so it cannot resume a stream of all of them.
                    yield ServerSentEvent(data=parsed[0])
                if sub.dropped:  # lost while this client was being written to
                    break
            if sub.buffer or sub.dropped:
                sub.wake.set()
