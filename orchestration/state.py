"""Durable state: cycle records, locks, spend, task history, backlog and cancel flags.

`RedisState` is the real one; `LocalState` keeps the same records in files for `run --local`. A cycle
record is a typed `CycleRecord`, written through `update_cycle` (its context and the named fields of its
own, in one step that never reopens a closed record; `save_cycle` is the whole record); the Redis hash also carries flat
copies of the context's status, reason, times and branch for readers outside the project.
"""

from __future__ import annotations

import fcntl
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from pydantic import ValidationError

from orchestration.files import write_atomic
from orchestration.keys import Keys
from orchestration.models import CycleContext, CycleRecord, RunningStage, TaskRecord, WorkerBeat

if TYPE_CHECKING:
    import redis
    from redis.lock import Lock

log = logging.getLogger(__name__)

CYCLE_TTL_S = 90 * 86400
SPEND_TTL_S = 40 * 86400
CANCEL_TTL_S = 2 * 86400
FIRE_TTL_S = 8 * 86400  # longer than any catch-up looks back
HISTORY_KEEP_S = 90 * 86400
LOCAL_HISTORY_ROWS = 1000


class LockHold(StrEnum):
    """What `hold_lock` found: the lock still ours, gone and taken again (Redis lost it), or someone else's."""

    HELD = "held"
    RETAKEN = "retaken"
    LOST = "lost"


class CycleClosed(Exception):
    """`save_cycle` refused: the stored record is closed (it has `finished_at`) and the one given is not; a
    closed record is never reopened."""


class State(Protocol):
    def save_cycle(self, record: CycleRecord) -> None: ...
    def update_cycle(self, record: CycleRecord, fields: frozenset[str]) -> bool: ...
    def get_cycle(self, cycle_id: str) -> CycleRecord | None: ...
    def recent_cycles(self, workspace: str | None = None, limit: int = 20) -> list[CycleRecord]: ...
    def acquire_lock(self, workspace: str, ttl_s: int) -> str | None: ...
    def release_lock(self, workspace: str, token: str) -> bool: ...
    def hold_lock(self, workspace: str, token: str, ttl_s: int) -> LockHold: ...
    def add_spend(self, workspace: str, day: str, usd: float) -> float: ...
    def get_spend(self, workspace: str, day: str) -> float: ...
    def record_task(self, workspace: str, entry: TaskRecord) -> None: ...
    def task_history(self, workspace: str, since: float) -> list[TaskRecord]: ...
    def push_backlog(self, workspace: str, task: str) -> int: ...
    def pop_backlog(self, workspace: str) -> str | None: ...
    def list_backlog(self, workspace: str) -> list[str]: ...
    def request_cancel(self, cycle_id: str) -> None: ...
    def is_cancelled(self, cycle_id: str) -> bool: ...
    def mark_once(self, cycle_id: str, what: str) -> bool: ...
    def is_finished(self, cycle_id: str) -> bool: ...
    def claim_fire(self, workspace: str, fire_ts: int) -> bool: ...
    def beat(self, beat: WorkerBeat, ttl_s: int) -> None: ...
    def workers(self) -> list[WorkerBeat]: ...
    def host_alive(self, host: str) -> bool: ...


def queued_ts(record: CycleRecord) -> float:
    """When the cycle was queued, as a unix time (the order of `recent_cycles`)."""
    try:
        return datetime.fromisoformat((record.ctx.queued_at or "").replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _js(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def context_fields(ctx: CycleContext) -> dict[str, str | None]:
    """The hash fields the context gives: itself, and the flat copies readers outside the project see."""
    return {
        "cycle_id": ctx.cycle_id,
        "workspace": ctx.workspace,
        "status": ctx.status.value,
        "reason": ctx.reason.value if ctx.reason else None,
        "trigger": ctx.trigger,
        "queued_at": ctx.queued_at,
        "started_at": ctx.started_at,
        "deadline": _js(ctx.deadline),
        "branch": ctx.branch,
        "worktree": ctx.worktree,
        "base_ref": ctx.base_sha,
        "ctx": ctx.model_dump_json(),
    }


# The record's own fields besides the context, each with the hash fields it is kept in.
RUNNER_FIELDS: dict[str, tuple[str, ...]] = {
    "host": ("host",),
    "runner": ("runner",),
    "agent_pgid": ("agent_pid", "agent_pgid"),
    "agent_identity": ("agent_identity",),
    "stage": ("stage",),
    "finished_at": ("finished_at",),
    "report": ("report",),
}


ALL_FIELDS = frozenset(RUNNER_FIELDS)  # a whole record's write


def runner_fields(record: CycleRecord, names: Iterable[str] = RUNNER_FIELDS) -> dict[str, str | None]:
    """The hash fields of the record's own fields `names` (all of them by default)."""
    values: dict[str, str | None] = {
        "host": record.host,
        "runner": record.runner,
        "agent_pgid": _js(record.agent_pgid),
        "agent_identity": record.agent_identity,
        "stage": record.stage.model_dump_json() if record.stage else None,
        "finished_at": record.finished_at,
        "report": _js(record.report.public()) if record.report else None,
    }
    out: dict[str, str | None] = {}
    for name in names:
        for field in RUNNER_FIELDS[name]:
            out[field] = values[name]
    return out


def record_from_hash(raw: dict[str, str]) -> CycleRecord | None:
    """The typed record back from its hash fields; None (logged) for a record that cannot be read."""
    try:
        return CycleRecord.model_validate(
            {
                "ctx": orjson.loads(raw["ctx"]),
                "host": raw.get("host"),
                "runner": raw.get("runner"),
                "agent_pgid": orjson.loads(raw["agent_pgid"]) if raw.get("agent_pgid") else None,
                "agent_identity": raw.get("agent_identity"),
                "stage": RunningStage.model_validate_json(raw["stage"]) if raw.get("stage") else None,
                "finished_at": raw.get("finished_at"),
                "report": orjson.loads(raw["report"]) if raw.get("report") else None,
            }
        )
    except (KeyError, orjson.JSONDecodeError, ValidationError) as exc:
        log.warning("unreadable cycle record %s: %s", raw.get("cycle_id"), str(exc)[:300])
        return None


# update_cycle in one round trip. KEYS: the record's hash, its workspace's index. ARGV: close (1: write over a
# closed record too), TTL, index score, cycle id, the number of fields to set, then field/value pairs, then the
# fields to delete. 0, writing nothing, when the record is closed and this is no close.
_UPDATE_LUA = """
if ARGV[1] ~= '1' and redis.call('HEXISTS', KEYS[1], 'finished_at') == 1 then return 0 end
local n = tonumber(ARGV[5])
if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 6, 5 + 2 * n)) end
if #ARGV > 5 + 2 * n then redis.call('HDEL', KEYS[1], unpack(ARGV, 6 + 2 * n, #ARGV)) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
"""


class RedisState:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        # redis-py's return types are unions over decode_responses; this client always returns bytes.
        self.redis: Any = client
        self.keys = Keys(prefix)
        self._update_script = client.register_script(_UPDATE_LUA)

    # -- cycle records -------------------------------------------------------------------------
    def save_cycle(self, record: CycleRecord) -> None:
        """Writes the record whole; raises CycleClosed, writing nothing, when the stored one is closed and
        this one is not (checked and written in one script: a close in between is seen)."""
        if not self.update_cycle(record, ALL_FIELDS):
            raise CycleClosed(record.cycle_id)

    def update_cycle(self, record: CycleRecord, fields: frozenset[str]) -> bool:
        """Writes the record's context and, of its own fields, only `fields`, keeping the others as stored:
        no read first, one round trip. False, writing nothing, when the stored record is closed and this
        write does not close it (a closed record is never reopened)."""
        values = {**context_fields(record.ctx), **runner_fields(record, fields)}
        present: list[str] = [x for k, v in values.items() if v is not None for x in (k, v)]
        absent = [k for k, v in values.items() if v is None]
        close = "1" if "finished_at" in fields and record.finished_at else "0"
        args: list[str | int | float] = [
            close,
            CYCLE_TTL_S,
            queued_ts(record),
            record.cycle_id,
            len(present) // 2,
            *present,
            *absent,
        ]
        keys = [self.keys.cycle(record.cycle_id), self.keys.cycles(record.workspace)]
        return bool(self._update_script(keys=keys, args=args))

    def get_cycle(self, cycle_id: str) -> CycleRecord | None:
        raw = self.redis.hgetall(self.keys.cycle(cycle_id))
        if not raw:
            return None
        return record_from_hash({k.decode(): v.decode(errors="replace") for k, v in raw.items()})

    def recent_cycles(self, workspace: str | None = None, limit: int = 20) -> list[CycleRecord]:
        if workspace:
            ids = [i.decode() for i in self.redis.zrevrange(self.keys.cycles(workspace), 0, limit - 1)]
        else:
            scored: list[tuple[float, str]] = []
            for zkey in self.redis.scan_iter(match=self.keys.all_cycles, count=500):
                scored += [(s, i.decode()) for i, s in self.redis.zrevrange(zkey, 0, limit - 1, withscores=True)]
            ids = [i for _, i in sorted(scored, reverse=True)[:limit]]
        return [rec for rec in map(self.get_cycle, ids) if rec is not None]

    # -- workspace lock ------------------------------------------------------------------------
    def _lock(self, workspace: str, ttl_s: int | None = None) -> Lock:
        # The lock is held across chain steps in different processes: not thread-local, released by token.
        lock: Lock = self.redis.lock(self.keys.lock(workspace), timeout=ttl_s, blocking=False, thread_local=False)
        return lock

    def acquire_lock(self, workspace: str, ttl_s: int) -> str | None:
        token = uuid.uuid4().hex
        lock = self._lock(workspace, ttl_s)
        return token if lock.acquire(token=token) else None

    def hold_lock(self, workspace: str, token: str, ttl_s: int) -> LockHold:
        key = self.keys.lock(workspace)
        if self.redis.set(key, token, nx=True, ex=max(1, ttl_s)):
            return LockHold.RETAKEN
        held = self.redis.get(key)
        return LockHold.HELD if held is not None and held.decode() == token else LockHold.LOST

    def release_lock(self, workspace: str, token: str) -> bool:
        from redis.exceptions import LockNotOwnedError

        lock = self._lock(workspace)
        try:
            lock.do_release(token)
        except LockNotOwnedError:
            return False
        return True

    # -- spend ---------------------------------------------------------------------------------
    def add_spend(self, workspace: str, day: str, usd: float) -> float:
        key = self.keys.spend(workspace, day)
        pipe = self.redis.pipeline()
        pipe.incrbyfloat(key, usd)
        pipe.expire(key, SPEND_TTL_S)
        total, _ = pipe.execute()
        return float(total)

    def get_spend(self, workspace: str, day: str) -> float:
        raw = self.redis.get(self.keys.spend(workspace, day))
        return float(raw) if raw else 0.0

    # -- task history (dedupe) -----------------------------------------------------------------
    def record_task(self, workspace: str, entry: TaskRecord) -> None:
        key = self.keys.tasks(workspace)
        pipe = self.redis.pipeline()
        pipe.zadd(key, {entry.model_dump_json(): entry.at})
        pipe.zremrangebyscore(key, "-inf", entry.at - HISTORY_KEEP_S)
        pipe.execute()

    def task_history(self, workspace: str, since: float) -> list[TaskRecord]:
        return _task_records(self.redis.zrangebyscore(self.keys.tasks(workspace), since, "+inf"))

    # -- human backlog -------------------------------------------------------------------------
    def push_backlog(self, workspace: str, task: str) -> int:
        return int(self.redis.rpush(self.keys.backlog(workspace), task))

    def pop_backlog(self, workspace: str) -> str | None:
        raw = self.redis.lpop(self.keys.backlog(workspace))
        return raw.decode() if isinstance(raw, bytes) else raw

    def list_backlog(self, workspace: str) -> list[str]:
        return [b.decode() for b in self.redis.lrange(self.keys.backlog(workspace), 0, -1)]

    # -- cancel --------------------------------------------------------------------------------
    def request_cancel(self, cycle_id: str) -> None:
        self.redis.set(self.keys.cancel(cycle_id), "1", ex=CANCEL_TTL_S)

    def is_cancelled(self, cycle_id: str) -> bool:
        return bool(self.redis.exists(self.keys.cancel(cycle_id)))

    def mark_once(self, cycle_id: str, what: str) -> bool:
        """True the first time only: keeps redelivered stages (acks_late) from counting twice."""
        return bool(self.redis.hsetnx(self.keys.cycle(cycle_id), f"once:{what}", "1"))

    def is_finished(self, cycle_id: str) -> bool:
        return bool(self.redis.hexists(self.keys.cycle(cycle_id), "finished_at"))

    def claim_fire(self, workspace: str, fire_ts: int) -> bool:
        """True for the first caller only, per scheduled fire of a workspace."""
        return bool(self.redis.set(self.keys.fire(workspace, fire_ts), "1", nx=True, ex=FIRE_TTL_S))

    # -- workers -------------------------------------------------------------------------------
    def beat(self, beat: WorkerBeat, ttl_s: int) -> None:
        self.redis.set(self.keys.worker(beat.host, beat.node or str(beat.pid)), beat.model_dump_json(), ex=ttl_s)

    def workers(self) -> list[WorkerBeat]:
        out = []
        for key in self.redis.scan_iter(match=self.keys.all_workers, count=500):
            raw = self.redis.get(key)
            try:
                out.append(WorkerBeat.model_validate_json(raw or b""))
            except ValueError:  # written by something else: not a worker of ours
                continue
        return sorted(out, key=lambda b: (b.host, b.node))

    def host_alive(self, host: str) -> bool:
        return next(iter(self.redis.scan_iter(match=self.keys.host_workers(host), count=500)), None) is not None


def _task_records(rows: Iterable[Any]) -> list[TaskRecord]:
    """History rows (JSON text or parsed) as records; a row that is not one (hand-edited, an older shape)
    is skipped."""
    out: list[TaskRecord] = []
    for row in rows:
        try:
            if isinstance(row, bytes | str):
                parsed = TaskRecord.model_validate_json(row)
            else:
                parsed = TaskRecord.model_validate(row)
        except ValidationError:
            continue
        out.append(parsed)
    return out


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
        write_atomic(path, orjson.dumps(data, option=orjson.OPT_INDENT_2))

    def _cycle_file(self, cycle_id: str) -> str:
        return f"cycles/{cycle_id}.json"

    def save_cycle(self, record: CycleRecord) -> None:
        """As RedisState.save_cycle: a closed record is never overwritten by one that is not."""
        if not self.update_cycle(record, ALL_FIELDS):
            raise CycleClosed(record.cycle_id)

    def update_cycle(self, record: CycleRecord, fields: frozenset[str]) -> bool:
        """As RedisState.update_cycle."""
        with self._locked(self._cycle_file(record.cycle_id)) as path:
            stored = self._load(path, {})
            close = "finished_at" in fields and record.finished_at
            if not close and stored.get("finished_at"):
                return False
            mine = record.model_dump(mode="json")
            merged = {**stored, "ctx": mine["ctx"], **{name: mine[name] for name in fields}}
            self._save(path, {**merged, "once": stored.get("once", [])})
            return True

    def get_cycle(self, cycle_id: str) -> CycleRecord | None:
        return self._read(self.dir / self._cycle_file(cycle_id))

    def _read(self, path: Path) -> CycleRecord | None:
        data = self._load(path, None)
        if not isinstance(data, dict) or "ctx" not in data:
            return None
        try:
            return CycleRecord.model_validate(data)
        except ValidationError as exc:
            log.warning("unreadable cycle record %s: %s", path, str(exc)[:300])
            return None

    def recent_cycles(self, workspace: str | None = None, limit: int = 20) -> list[CycleRecord]:
        recs = [r for r in map(self._read, (self.dir / "cycles").glob("*.json")) if r is not None]
        recs = [r for r in recs if workspace is None or r.workspace == workspace]
        recs.sort(key=queued_ts, reverse=True)
        return recs[:limit]

    def acquire_lock(self, workspace: str, ttl_s: int) -> str | None:
        with self._locked(f"lock-{workspace}.json") as path:
            cur = self._load(path, {})
            if cur and float(cur.get("expires", 0)) > time.time():
                return None
            token = uuid.uuid4().hex
            self._save(path, {"token": token, "expires": time.time() + ttl_s})
            return token

    def hold_lock(self, workspace: str, token: str, ttl_s: int) -> LockHold:
        with self._locked(f"lock-{workspace}.json") as path:
            cur = self._load(path, {})
            if cur and float(cur.get("expires", 0)) > time.time():
                return LockHold.HELD if cur.get("token") == token else LockHold.LOST
            self._save(path, {"token": token, "expires": time.time() + ttl_s})
            return LockHold.RETAKEN

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

    def record_task(self, workspace: str, entry: TaskRecord) -> None:
        with self._locked(f"tasks-{workspace}.json") as path:
            rows = self._load(path, [])
            rows.append(entry.model_dump(mode="json"))
            self._save(path, rows[-LOCAL_HISTORY_ROWS:])

    def task_history(self, workspace: str, since: float) -> list[TaskRecord]:
        rows = self._load(self.dir / f"tasks-{workspace}.json", [])
        return [r for r in _task_records(rows if isinstance(rows, list) else []) if r.at >= since]

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
        record = self.get_cycle(cycle_id)
        return bool(record and record.finished_at)

    def mark_once(self, cycle_id: str, what: str) -> bool:
        with self._locked(self._cycle_file(cycle_id)) as path:
            data = self._load(path, {})
            once = data.get("once", [])
            if what in once:
                return False
            data["once"] = [*once, what]
            self._save(path, data)
            return True

    # Local mode has one host, this process: no heartbeats.
    def beat(self, beat: WorkerBeat, ttl_s: int) -> None:
        return None

    def workers(self) -> list[WorkerBeat]:
        return []

    def host_alive(self, host: str) -> bool:
        return True

    def claim_fire(self, workspace: str, fire_ts: int) -> bool:
        with self._locked("fires.json") as path:
            fired = self._load(path, {})
            key = f"{workspace}:{fire_ts}"
            if key in fired:
                return False
            fired[key] = time.time()
            self._save(path, {k: v for k, v in fired.items() if v > time.time() - FIRE_TTL_S})
            return True
