"""Durable state (SPEC §7): cycle records, locks, spend, task history, backlog and cancel flags.

`RedisState` is the real one; `LocalState` keeps the same records in files for `run --local`.
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import orjson
import redis
from redis.lock import Lock

CYCLE_TTL_S = 90 * 86400
SPEND_TTL_S = 40 * 86400
CANCEL_TTL_S = 2 * 86400
HISTORY_KEEP_S = 90 * 86400


class State(Protocol):
    def put_cycle(self, cycle_id: str, fields: dict[str, Any]) -> None: ...
    def get_cycle(self, cycle_id: str) -> dict[str, Any] | None: ...
    def recent_cycles(self, workspace: str | None = None, limit: int = 20) -> list[dict[str, Any]]: ...
    def acquire_lock(self, workspace: str, ttl_s: int) -> str | None: ...
    def release_lock(self, workspace: str, token: str) -> bool: ...
    def add_spend(self, workspace: str, day: str, usd: float) -> float: ...
    def get_spend(self, workspace: str, day: str) -> float: ...
    def record_task(self, workspace: str, entry: dict[str, Any]) -> None: ...
    def task_history(self, workspace: str, since: float) -> list[dict[str, Any]]: ...
    def push_backlog(self, workspace: str, task: str) -> int: ...
    def pop_backlog(self, workspace: str) -> str | None: ...
    def list_backlog(self, workspace: str) -> list[str]: ...
    def request_cancel(self, cycle_id: str) -> None: ...
    def is_cancelled(self, cycle_id: str) -> bool: ...
    def mark_once(self, cycle_id: str, what: str) -> bool: ...
    def is_finished(self, cycle_id: str) -> bool: ...


def _enc(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


# Fields of the cycle hash that hold JSON rather than plain text.
JSON_FIELDS = frozenset({"report", "ctx", "deadline", "agent_pid", "agent_pgid", "queued_at_ts"})


def _dec(name: str, raw: str) -> Any:
    if name in JSON_FIELDS:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
    return raw


class RedisState:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        # redis-py's return types are unions over decode_responses; this client always returns bytes.
        self.r: Any = client
        self.p = prefix

    def key(self, *parts: str) -> str:
        return ":".join((self.p, *parts))

    # -- cycle records -------------------------------------------------------------------------
    def put_cycle(self, cycle_id: str, fields: dict[str, Any]) -> None:
        mapping = {k: _enc(v) for k, v in fields.items() if v is not None}
        key = self.key("cycle", cycle_id)
        pipe = self.r.pipeline()
        if mapping:
            pipe.hset(key, mapping=mapping)
        for k in (k for k, v in fields.items() if v is None):
            pipe.hdel(key, k)
        pipe.expire(key, CYCLE_TTL_S)
        if "workspace" in fields and "queued_at_ts" in fields:
            pipe.zadd(self.key("cycles", str(fields["workspace"])), {cycle_id: float(fields["queued_at_ts"])})
        pipe.execute()

    def get_cycle(self, cycle_id: str) -> dict[str, Any] | None:
        raw = self.r.hgetall(self.key("cycle", cycle_id))
        if not raw:
            return None
        return {k.decode(): _dec(k.decode(), v.decode(errors="replace")) for k, v in raw.items()}

    def recent_cycles(self, workspace: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        if workspace:
            ids = [i.decode() for i in self.r.zrevrange(self.key("cycles", workspace), 0, limit - 1)]
        else:
            scored: list[tuple[float, str]] = []
            for zkey in self.r.scan_iter(match=self.key("cycles", "*"), count=500):
                scored += [(s, i.decode()) for i, s in self.r.zrevrange(zkey, 0, limit - 1, withscores=True)]
            ids = [i for _, i in sorted(scored, reverse=True)[:limit]]
        out = []
        for cid in ids:
            rec = self.get_cycle(cid)
            if rec:
                out.append(rec)
        return out

    # -- workspace lock ------------------------------------------------------------------------
    def _lock(self, workspace: str, ttl_s: int | None = None) -> Lock:
        # The lock is held across chain steps in different processes: not thread-local, released by token.
        lock: Lock = self.r.lock(self.key("lock", workspace), timeout=ttl_s, blocking=False, thread_local=False)
        return lock

    def acquire_lock(self, workspace: str, ttl_s: int) -> str | None:
        token = uuid.uuid4().hex
        lock = self._lock(workspace, ttl_s)
        return token if lock.acquire(token=token) else None

    def release_lock(self, workspace: str, token: str) -> bool:
        lock = self._lock(workspace)
        try:
            lock.do_release(token)
        except redis.exceptions.LockNotOwnedError:
            return False
        return True

    # -- spend ---------------------------------------------------------------------------------
    def add_spend(self, workspace: str, day: str, usd: float) -> float:
        key = self.key("spend", workspace, day)
        pipe = self.r.pipeline()
        pipe.incrbyfloat(key, usd)
        pipe.expire(key, SPEND_TTL_S)
        total, _ = pipe.execute()
        return float(total)

    def get_spend(self, workspace: str, day: str) -> float:
        raw = self.r.get(self.key("spend", workspace, day))
        return float(raw) if raw else 0.0

    # -- task history (dedupe) -----------------------------------------------------------------
    def record_task(self, workspace: str, entry: dict[str, Any]) -> None:
        key = self.key("tasks", workspace)
        now = float(entry.get("at", time.time()))
        pipe = self.r.pipeline()
        pipe.zadd(key, {orjson.dumps(entry).decode(): now})
        pipe.zremrangebyscore(key, "-inf", now - HISTORY_KEEP_S)
        pipe.execute()

    def task_history(self, workspace: str, since: float) -> list[dict[str, Any]]:
        rows = self.r.zrangebyscore(self.key("tasks", workspace), since, "+inf")
        out = []
        for row in rows:
            try:
                out.append(orjson.loads(row))
            except orjson.JSONDecodeError:
                continue
        return out

    # -- human backlog -------------------------------------------------------------------------
    def push_backlog(self, workspace: str, task: str) -> int:
        return int(self.r.rpush(self.key("backlog", workspace), task))

    def pop_backlog(self, workspace: str) -> str | None:
        raw = self.r.lpop(self.key("backlog", workspace))
        return raw.decode() if isinstance(raw, bytes) else raw

    def list_backlog(self, workspace: str) -> list[str]:
        return [b.decode() for b in self.r.lrange(self.key("backlog", workspace), 0, -1)]

    # -- cancel --------------------------------------------------------------------------------
    def request_cancel(self, cycle_id: str) -> None:
        self.r.set(self.key("cancel", cycle_id), "1", ex=CANCEL_TTL_S)

    def is_cancelled(self, cycle_id: str) -> bool:
        return bool(self.r.exists(self.key("cancel", cycle_id)))

    def mark_once(self, cycle_id: str, what: str) -> bool:
        """True the first time only: keeps redelivered stages (acks_late) from counting twice."""
        return bool(self.r.hsetnx(self.key("cycle", cycle_id), f"once:{what}", "1"))

    def is_finished(self, cycle_id: str) -> bool:
        return bool(self.r.hexists(self.key("cycle", cycle_id), "finished_at"))


class LocalState:
    """The same records as files under `<state_dir>/local`, for a laptop with no Redis."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        (self.dir / "cycles").mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _locked(self, name: str) -> Iterator[Path]:
        path = self.dir / name
        flock = path.with_name(f".{path.name}.flock")
        with flock.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield path
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _load(self, path: Path, default: Any) -> Any:
        try:
            return orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return default

    def _save(self, path: Path, data: Any) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        os.replace(tmp, path)

    def put_cycle(self, cycle_id: str, fields: dict[str, Any]) -> None:
        with self._locked(f"cycles/{cycle_id}.json") as path:
            rec = self._load(path, {})
            for k, v in fields.items():
                if v is None:
                    rec.pop(k, None)
                else:
                    rec[k] = v
            self._save(path, rec)

    def get_cycle(self, cycle_id: str) -> dict[str, Any] | None:
        rec = self._load(self.dir / "cycles" / f"{cycle_id}.json", None)
        return rec if isinstance(rec, dict) else None

    def recent_cycles(self, workspace: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        recs = [self._load(p, {}) for p in (self.dir / "cycles").glob("*.json")]
        recs = [r for r in recs if isinstance(r, dict) and (workspace is None or r.get("workspace") == workspace)]
        recs.sort(key=lambda r: float(r.get("queued_at_ts", 0)), reverse=True)
        return recs[:limit]

    def acquire_lock(self, workspace: str, ttl_s: int) -> str | None:
        with self._locked(f"lock-{workspace}.json") as path:
            cur = self._load(path, {})
            if cur and float(cur.get("expires", 0)) > time.time():
                return None
            token = uuid.uuid4().hex
            self._save(path, {"token": token, "expires": time.time() + ttl_s})
            return token

    def release_lock(self, workspace: str, token: str) -> bool:
        with self._locked(f"lock-{workspace}.json") as path:
            cur = self._load(path, {})
            if cur.get("token") != token:
                return False
            path.unlink(missing_ok=True)
            return True

    def add_spend(self, workspace: str, day: str, usd: float) -> float:
        with self._locked("spend.json") as path:
            data = self._load(path, {})
            key = f"{workspace}:{day}"
            data[key] = float(data.get(key, 0.0)) + usd
            self._save(path, data)
            return float(data[key])

    def get_spend(self, workspace: str, day: str) -> float:
        return float(self._load(self.dir / "spend.json", {}).get(f"{workspace}:{day}", 0.0))

    def record_task(self, workspace: str, entry: dict[str, Any]) -> None:
        with self._locked(f"tasks-{workspace}.json") as path:
            rows = self._load(path, [])
            rows.append(entry)
            self._save(path, rows[-1000:])

    def task_history(self, workspace: str, since: float) -> list[dict[str, Any]]:
        rows = self._load(self.dir / f"tasks-{workspace}.json", [])
        return [r for r in rows if isinstance(r, dict) and float(r.get("at", 0)) >= since]

    def push_backlog(self, workspace: str, task: str) -> int:
        with self._locked(f"backlog-{workspace}.json") as path:
            rows = self._load(path, [])
            rows.append(task)
            self._save(path, rows)
            return len(rows)

    def pop_backlog(self, workspace: str) -> str | None:
        with self._locked(f"backlog-{workspace}.json") as path:
            rows = self._load(path, [])
            if not rows:
                return None
            task = rows.pop(0)
            self._save(path, rows)
            return str(task)

    def list_backlog(self, workspace: str) -> list[str]:
        return [str(t) for t in self._load(self.dir / f"backlog-{workspace}.json", [])]

    def request_cancel(self, cycle_id: str) -> None:
        (self.dir / "cycles" / f"{cycle_id}.cancel").touch()

    def is_cancelled(self, cycle_id: str) -> bool:
        return (self.dir / "cycles" / f"{cycle_id}.cancel").exists()

    def is_finished(self, cycle_id: str) -> bool:
        return bool((self.get_cycle(cycle_id) or {}).get("finished_at"))

    def mark_once(self, cycle_id: str, what: str) -> bool:
        with self._locked(f"cycles/{cycle_id}.json") as path:
            rec = self._load(path, {})
            if rec.get(f"once:{what}"):
                return False
            rec[f"once:{what}"] = "1"
            self._save(path, rec)
            return True
