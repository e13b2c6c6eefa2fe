"""The analyze stage: what people did with their agents in this repository, per provider and overall.

The providers are the registered agents that have a session reader (`AgentSpec.sessions`), each reported
under the agent's name. Each provider's reader turns one file into keyed `SessionStats`; this module picks
the files (recent enough, most recent first, at most `max_sessions` sessions), keeps the ones whose cwd is
inside the repo, merges them with first-seen-wins on every key (so a response, tool call or prompt copied
into a resumed session's file counts once) and folds the result into the `Insights` model.

Reading is incremental (see `cache`): an unchanged file is not opened, a grown one is read from where the
last run stopped. A large cold read is spread over the machine's cores.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar

from orchestration.agents.registry import AGENTS, SessionSource
from orchestration.config import Sessions
from orchestration.models import Insights, ProviderInsights, Tokens, iso, utcnow
from orchestration.sessions import cache
from orchestration.sessions._common import SessionStats, Usage, Workspace, usage_wins
from orchestration.sessions.work import work_items
from orchestration.settings import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_GOALS = 20
MAX_GOAL_CHARS = 300


def session_sources() -> dict[str, SessionSource]:
    """Provider name → its session source: every registered agent that has one, in the registry's order."""
    return {name: spec.sessions for name, spec in AGENTS.items() if spec.sessions is not None}


# A cold read smaller than this is not worth starting worker processes for.
PARALLEL_MIN_BYTES = 64 * 1024 * 1024
# Files sent to a worker process at a time.
SCAN_BATCH = 4


@dataclass
class _Scan:
    entry: cache.Entry | None  # None: the file could not be read (not cached)
    changed: bool = True


def _scan(kind: str, path: str, mtime: float, entry: cache.Entry | None, ws: Workspace) -> _Scan:
    """Brings one file's cache entry up to date, reading only what is new. Never raises for file trouble.

    `ws` belongs to the run (in a worker process, to the batch of files it was sent): its path caches
    never outlive it.
    """
    try:
        stat = os.stat(path)
    except OSError:
        return _Scan(None)
    same = entry is not None and (entry.dev, entry.ino) == (stat.st_dev, stat.st_ino)
    if same and entry is not None and (entry.size, entry.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
        return _Scan(entry, changed=False)
    new = session_sources()[kind].reader
    unchanged_head = (
        same
        and entry is not None
        and stat.st_size >= entry.offset
        and cache.marks_of(path, entry.offset) == entry.marks
    )
    if unchanged_head and entry is not None and entry.in_workspace is False:
        # Another workspace's session (its first cwd decided that): growth changes nothing.
        entry.size, entry.mtime_ns = stat.st_size, stat.st_mtime_ns
        return _Scan(entry)
    start, reader = 0, None
    if unchanged_head and entry is not None and entry.reader is not None:
        start, reader = entry.offset, entry.reader
    if reader is None:
        reader = new(path, mtime)
    pos = [start]
    reader.read(ws, start, pos)
    if reader.st.skipped.get("unreadable_file"):
        return _Scan(None)
    in_ws = reader.st.in_workspace
    reader.st.mtime = mtime
    return _Scan(
        cache.Entry(
            dev=stat.st_dev,
            ino=stat.st_ino,
            size=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
            offset=pos[0],
            marks=cache.marks_of(path, pos[0]),
            in_workspace=in_ws,
            reader=None if in_ws is False else reader,  # kept while the file may still count
        ),
    )


_ScanArgs = tuple[str, str, float, cache.Entry | None]  # provider, path, mtime, cache entry


def _scan_batch(ws: Workspace, batch: list[_ScanArgs]) -> list[_Scan]:
    """Scans a batch of files in a worker process, with one Workspace for the whole batch."""
    return [_scan(*a, ws) for a in batch]


Progress = Callable[[str, int, int], None]  # (provider, files done, files in all)


def _scan_all(
    kind: str,
    files: list[tuple[str, float]],
    entries: dict[str, cache.Entry],
    ws: Workspace,
    workers: int | None,
    progress: Progress | None = None,
) -> dict[str, _Scan]:
    """Scans every file, in worker processes when the cold part is big enough to pay for them."""
    args: list[_ScanArgs] = [(kind, path, mtime, entries.get(path)) for path, mtime in files]
    todo_bytes = 0
    for path, _mtime in files:
        entry = entries.get(path)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if entry is not None and (
            entry.in_workspace is False or (entry.size, entry.mtime_ns) == (st.st_size, st.st_mtime_ns)
        ):
            continue  # nothing (or nothing worth a process) to read
        todo_bytes += max(0, st.st_size - (entry.offset if entry else 0))
    n = workers if workers is not None else (os.cpu_count() or 1)
    tick = progress or (lambda _kind, _done, _total: None)
    if args:
        tick(kind, 0, len(args))  # the caller's display can show the provider before its first file is done
    if n > 1 and todo_bytes >= PARALLEL_MIN_BYTES and len(files) > 1:
        try:
            return _scan_parallel(args, ws, min(n, len(files)), lambda done: tick(kind, done, len(args)))
        except (OSError, RuntimeError, AssertionError) as exc:  # no processes here (daemon, limits)
            log.info("analyzing in one process: %s", exc)
    out: dict[str, _Scan] = {}
    for i, a in enumerate(args, 1):
        out[a[1]] = _scan(*a, ws)
        tick(kind, i, len(args))
    return out


# While worker processes read, `progress` is told at least this often (the same count when nothing finished),
# so that a caller can keep its display alive from this thread.
TICK_S = 0.1


def _scan_parallel(args: list[_ScanArgs], ws: Workspace, n: int, tick: Callable[[int], None]) -> dict[str, _Scan]:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # fork is cheapest, but only safe while this process has no other threads; spawn starts a new interpreter
    # per worker, which imports the parent's __main__ again (a caller with a display thread pays for that).
    method = "fork" if threading.active_count() == 1 else "spawn"
    # Biggest files first, so the last ones to finish are short.
    order = sorted(args, key=lambda a: -(a[3].offset if a[3] else 0) - _size(a[1]))
    batches = [order[i : i + SCAN_BATCH] for i in range(0, len(order), SCAN_BATCH)]
    out: dict[str, _Scan] = {}
    done = 0
    with ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context(method)) as pool:
        running = {pool.submit(_scan_batch, ws, batch): batch for batch in batches}
        try:
            while running:
                finished, _ = wait(running, timeout=TICK_S, return_when=FIRST_COMPLETED)
                for future in finished:
                    batch = running.pop(future)
                    for a, r in zip(batch, future.result(), strict=True):
                        out[a[1]] = r
                    done += len(batch)
                tick(done)
        except BaseException:
            for future in running:  # a failed batch or an interrupt: what has not started never will
                future.cancel()
            raise
    return out


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


@dataclass
class _Acc:
    """One provider's merged, still-keyed results."""

    sessions: set[str] = field(default_factory=set)
    prompts: dict[str, tuple[datetime | None, str]] = field(default_factory=dict)
    tool_calls: dict[str, str] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    usage: dict[str, Usage] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    first_at: datetime | None = None
    last_at: datetime | None = None
    skipped: Counter[str] = field(default_factory=Counter)
    interruptions: dict[str, str] = field(default_factory=dict)
    # usage key -> (file, session, sidechain) of the line counted for it
    usage_owner: dict[str, tuple[str, str, bool]] = field(default_factory=dict)
    # (end time, session, reason, failure, last prompt) of files that end badly
    endings: list[tuple[str, str, str, str | None, str]] = field(default_factory=list)
    stats: list[SessionStats] = field(default_factory=list)  # each file's, for the work they left (see `work`)

    def add(self, st: SessionStats) -> None:
        self.sessions.add(st.session_id)
        self.stats.append(st)
        _merge(self.prompts, st.prompts)
        _merge(self.tool_calls, st.tool_calls)
        _merge(self.files, st.files)
        _merge(self.failures, st.failures)
        self._merge_usage(st)
        _merge(self.cost, st.cost)
        _merge(self.interruptions, st.interruptions)
        if (st.ends_on_error or st.ends_interrupted) and f"{os.sep}subagents{os.sep}" not in st.path:
            floor = datetime.min.replace(tzinfo=UTC)
            prompt = max(st.prompts.values(), key=lambda p: p[0] or floor, default=(None, ""))[1]
            reason = "interrupted" if st.ends_interrupted else "error"
            end = st.ts_max or iso(_from_mtime(st.mtime)) or ""
            self.endings.append((end, st.session_id, reason, st.ends_on_error, prompt[:MAX_GOAL_CHARS]))
        first = st.first_at or _from_mtime(st.mtime)
        last = st.last_at or _from_mtime(st.mtime)
        self.first_at = first if self.first_at is None else min(self.first_at, first)
        self.last_at = last if self.last_at is None else max(self.last_at, last)

    def _merge_usage(self, st: SessionStats) -> None:
        """One API response counted once across files, as ccusage does: a main-chain line beats a
        sidechain one, then the larger total, then the file first in path order; its session gets it."""
        for key, usage in st.usage.items():
            side = key in st.sidechain_usage
            old = self.usage.get(key)
            if old is not None:
                old_path, _, old_side = self.usage_owner[key]
                tie = not usage_wins(usage, side, old, old_side) and not usage_wins(old, old_side, usage, side)
                if not (usage_wins(usage, side, old, old_side) or (tie and st.path < old_path)):
                    continue
            self.usage[key] = usage
            self.usage_owner[key] = (st.path, st.session_id, side)


def _merge(mine: dict[str, T], theirs: dict[str, T]) -> None:
    """First seen wins: files are read most recent first, and a copied entry is identical anyway."""
    for key, value in theirs.items():
        mine.setdefault(key, value)


def _from_mtime(mtime: float) -> datetime:
    return datetime.fromtimestamp(mtime, UTC)


def _recent(kind: str, root: str, cutoff: float) -> tuple[list[tuple[str, float]], Counter[str]]:
    """The provider's files young enough to count, most recent first, and what the listing skipped."""
    skipped: Counter[str] = Counter()
    recent: list[tuple[str, float]] = []
    for path, mtime in session_sources()[kind].find(root, skipped):
        if mtime < cutoff:
            skipped["too_old"] += 1
        else:
            recent.append((path, mtime))
    recent.sort(key=lambda f: (-f[1], f[0]))
    return recent, skipped


def _run(
    kind: str,
    root: str,
    ws: Workspace,
    listing: tuple[list[tuple[str, float]], Counter[str]],
    max_sessions: int,
    cache_dir: Path | None,
    workers: int | None,
    progress: Progress | None,
) -> _Acc:
    """Reads one provider's recent files, most recent first, keeping workspace sessions up to the limit."""
    provider = session_sources()[kind]
    acc = _Acc()
    recent, listed_skips = listing
    acc.skipped.update(listed_skips)
    cache_path = cache.cache_file(cache_dir, kind, root, ws.root) if cache_dir is not None else None
    entries = cache.load(cache_path)
    scans = _scan_all(kind, recent, entries, ws, workers, progress)
    kept = {path: scan.entry for path, scan in scans.items() if scan.entry is not None}
    if any(scan.changed for scan in scans.values()) or kept.keys() != entries.keys():
        cache.save(cache_path, kept)
    for path, _mtime in recent:
        if len(acc.sessions) >= max_sessions and provider.path_key(path) not in acc.sessions:
            acc.skipped["over_limit"] += 1
            continue
        entry = scans[path].entry
        if entry is None:
            acc.skipped["unreadable_file"] += 1
            continue
        if entry.in_workspace is not True or entry.reader is None:
            acc.skipped["other_workspace" if entry.in_workspace is False else "no_cwd"] += 1
            continue
        try:
            st = entry.reader.result()
        except Exception:  # a reader bug must not take the whole stage down
            log.exception("session reader failed on %s", path)
            acc.skipped["reader_error"] += 1
            continue
        known = st.session_id in acc.sessions
        if known and not provider.files_share_sessions:
            acc.skipped["duplicate_session"] += 1
            continue
        if not known and len(acc.sessions) >= max_sessions:
            acc.skipped["over_limit"] += 1
            continue
        acc.skipped.update(st.skipped)
        acc.add(st)
    return acc


def _counts(names: Iterable[str]) -> dict[str, int]:
    """Name → count, most frequent first (stable, readable JSON)."""
    return dict(sorted(Counter(names).items(), key=lambda kv: (-kv[1], kv[0])))


def _goals(prompts: Iterable[tuple[datetime | None, str]]) -> list[str]:
    """Most recent first, each distinct request once, cut to size."""
    floor = datetime.min.replace(tzinfo=UTC)
    ordered = sorted(prompts, key=lambda p: p[0] or floor, reverse=True)
    out: list[str] = []
    seen: set[str] = set()
    for _ts, text in ordered:
        goal = text.strip()[:MAX_GOAL_CHARS].rstrip()
        if goal and goal not in seen:
            seen.add(goal)
            out.append(goal)
            if len(out) >= MAX_GOALS:
                break
    return out


MAX_UNFINISHED = 5


def _unfinished(named: list[tuple[str, _Acc]]) -> list[dict[str, object]]:
    rows = [(e, name) for name, acc in named for e in acc.endings]
    rows.sort(key=lambda r: r[0][0], reverse=True)
    out: list[dict[str, object]] = []
    seen: set[str] = set()
    for (end, session, reason, failure, prompt), name in rows:
        if session in seen:
            continue
        seen.add(session)
        out.append(
            {
                "provider": name,
                "session_id": session,
                "at": end or None,
                "reason": reason,
                "failure": failure,
                "last_prompt": prompt,
            }
        )
        if len(out) >= MAX_UNFINISHED:
            break
    return out


def _summary(named: list[tuple[str, _Acc]]) -> dict[str, object]:
    accs = [acc for _, acc in named]
    """The ProviderInsights fields for one or several accumulators (overall = all providers)."""
    totals = [0, 0, 0, 0]
    for acc in accs:
        for usage in acc.usage.values():
            for i, n in enumerate(usage):
                totals[i] += n
    tokens = Tokens(input=totals[0], output=totals[1], cache_read=totals[2], cache_write=totals[3])
    by_session: dict[str, list[int]] = {}
    for acc in accs:
        for key, usage in acc.usage.items():
            owner = acc.usage_owner.get(key)
            row = by_session.setdefault(owner[1] if owner else "?", [0, 0, 0, 0])
            for i, n in enumerate(usage):
                row[i] += n
    costs = [c for acc in accs for c in acc.cost.values()]
    firsts = [a.first_at for a in accs if a.first_at is not None]
    lasts = [a.last_at for a in accs if a.last_at is not None]
    skipped: Counter[str] = Counter()
    for acc in accs:
        skipped.update(acc.skipped)
    failures = _counts(n for a in accs for n in a.failures.values())
    return {
        "sessions": sum(len(a.sessions) for a in accs),
        "turns": sum(len(a.prompts) for a in accs),
        "tool_calls": sum(len(a.tool_calls) for a in accs),
        "tokens": tokens,
        "by_session": {
            sid: Tokens(input=r[0], output=r[1], cache_read=r[2], cache_write=r[3])
            for sid, r in sorted(by_session.items())
            if any(r)
        },
        "cost_usd": round(sum(costs), 6) if costs else None,
        "skipped": _counts(skipped.elements()) if skipped else {},
        "files": _counts(p for a in accs for paths in a.files.values() for p in paths),
        "tools": _counts(n for a in accs for n in a.tool_calls.values()),
        "failures": failures,
        "goals": _goals(p for a in accs for p in a.prompts.values()),
        "first_at": iso(min(firsts)) if firsts else None,
        "last_at": iso(max(lasts)) if lasts else None,
        "interruptions": sum(len(a.interruptions) for a in accs),
        "abandoned": len({(e[1]) for a in accs for e in a.endings if e[2] == "error"}),
        "repeated_failures": {k: n for k, n in failures.items() if n >= 2},
        "unfinished": _unfinished(named),
    }


def analyze_sessions(
    repo: str | Path,
    cfg: Sessions,
    now: datetime | None = None,
    cache_dir: Path | Literal["default"] | None = "default",
    workers: int | None = None,
    progress: Progress | None = None,
) -> Insights:
    """Insights from the enabled providers' recent sessions whose cwd lies inside `repo`.

    `cache_dir` holds the incremental-read cache (default: `ORCH_STATE_DIR/cache`; None: no cache).
    `workers` caps the processes used for a big cold read (default: one per core); `progress` is told
    (provider, files done, files in all) as files are read.
    Never raises for bad session data: missing directories give empty results, every unusable file or
    line is counted in `skipped` (overall and per provider).
    """
    if cache_dir == "default":
        cache_dir = get_settings().state_dir / "cache"
    ws = Workspace(repo)
    moment = now or utcnow()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    cutoff = moment.timestamp() - cfg.since_days * 86400
    sources = session_sources()
    roots: dict[str, str] = {
        str(name): os.path.realpath(os.path.expanduser(sources[name].directory(cfg)))
        for name in dict.fromkeys(cfg.providers)
        if name in sources
    }
    listings = {name: _recent(name, root, cutoff) for name, root in roots.items()}
    # Nothing changed since the last run (same files, sizes and mtimes, same settings): its result stands.
    signature = _signature(ws.root, roots, listings, cfg.max_sessions)
    result_path = cache.result_file(cache_dir, ws.root, roots) if cache_dir is not None else None
    cached = cache.load_result(result_path, signature)
    if cached is not None:
        try:
            return Insights.model_validate_json(cached)
        except ValueError:
            pass
    accs = {
        name: _run(name, root, ws, listings[name], cfg.max_sessions, cache_dir, workers, progress)
        for name, root in roots.items()
    }
    providers = {name: ProviderInsights.model_validate(_summary([(name, acc)])) for name, acc in accs.items()}
    work, fixed = work_items([(name, acc.stats) for name, acc in accs.items()])
    summary = _summary(list(accs.items()))
    insights = Insights.model_validate({**summary, "providers": providers, "work": work, "fixed": fixed})
    cache.save_result(result_path, signature, insights.model_dump_json().encode())
    return insights


def _signature(
    ws_root: str,
    roots: dict[str, str],
    listings: dict[str, tuple[list[tuple[str, float]], Counter[str]]],
    max_sessions: int,
) -> bytes:
    """Identifies the whole input of a run: every recent file's path, size and mtime, and the settings."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{cache.CACHE_VERSION}\0{ws_root}\0{max_sessions}".encode())
    for name, root in roots.items():
        recent, skipped = listings[name]
        h.update(f"\0{name}\0{root}\0{sorted(skipped.items())}".encode())
        for path, _mtime in recent:
            try:
                st = os.stat(path)
            except OSError:
                h.update(f"\0{path}\0gone".encode())
                continue
            h.update(f"\0{path}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.digest()
