"""Keeps the agent's supervision loop free of the network: events go out, and cancel requests come in, on
threads of their own.

The loop that watches the agent must never wait on Redis: a restart of Redis (or a slow network) would
otherwise stall the deadline and idle checks, or kill the agent with the connection error. `Outbox` sends
the run's events in order from one thread and keeps them while the hub is away; `Poller` asks whether the
cycle was cancelled every second and remembers the last answer it got.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from orchestration.agents.base import Emit

log = logging.getLogger(__name__)

# Events kept while the hub is away; past this, new ones are counted and dropped (a day's outage).
OUTBOX_MAX = 100_000
RETRY_S = 1.0


def transient(exc: BaseException) -> bool:
    """An error that passes when the hub comes back (connection refused or reset, timeouts, Redis loading)."""
    import redis

    return isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError)


class Outbox:
    """Sends events through `emit` in the order they were put, from its own thread; while `emit` fails with
    a transient error it keeps them and tries again every second. Other errors drop that one event."""

    def __init__(self, emit: Emit, name: str = "orchestrate-outbox") -> None:
        self._emit = emit
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.down_since: float | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, kind: str, data: dict[str, Any]) -> None:
        with self._cond:
            if len(self._queue) >= OUTBOX_MAX:
                self.dropped += 1
                return
            self._queue.append((kind, data))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def close(self, timeout_s: float) -> bool:
        """Waits up to `timeout_s` for every event to be sent; True when none is left behind."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout_s)
        left = self.pending()
        if left or self.dropped:
            log.error("%d event(s) could not be sent (the hub stayed away), %d dropped", left, self.dropped)
        return left == 0 and not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                kind, data = self._queue[0]
            try:
                self._emit(kind, data)
            except Exception as exc:
                if transient(exc):
                    if self.down_since is None:
                        self.down_since = time.monotonic()
                        log.warning("the event hub is away (%s); keeping events until it is back", exc)
                    time.sleep(RETRY_S)
                    continue
                log.exception("event %s could not be sent; dropped", kind)
            else:
                if self.down_since is not None:
                    log.warning("the event hub is back after %.0f s", time.monotonic() - self.down_since)
                    self.down_since = None
            with self._cond:
                self._queue.popleft()


class Poller:
    """Calls `check` every `every_s` on its own thread; `value()` is the last answer (False until one came
    or while `check` fails)."""

    def __init__(self, check: Callable[[], bool], every_s: float = 1.0, name: str = "orchestrate-cancel") -> None:
        self._check = check
        self._every = every_s
        self._value = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def value(self) -> bool:
        return self._value

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._value = bool(self._check())
            except Exception as exc:  # the hub away: the last answer stands; the next poll tries again
                log.debug("cancel check failed: %s", exc)
            self._stop.wait(self._every)
