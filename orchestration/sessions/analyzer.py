"""The analyze stage: what people did with their agents in this repository, per provider and overall.

Each provider's reader turns one file into keyed `SessionStats`; this module picks the files (recent
enough, most recent first, at most `max_sessions` sessions), keeps the ones whose cwd is inside the repo,
merges them with first-seen-wins on every key (so a response, tool call or prompt copied into a resumed
session's file counts once) and folds the result into the `Insights` model.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from orchestration.config import Sessions
from orchestration.models import Insights, ProviderInsights, Tokens, iso, utcnow
from orchestration.sessions import claude, codex
from orchestration.sessions._common import SessionStats, Usage, Workspace

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_GOALS = 20
MAX_GOAL_CHARS = 300


@dataclass(frozen=True)
class _Provider:
    find: Callable[[str, Counter[str]], list[tuple[str, float]]]
    parse: Callable[[str, float, Workspace], SessionStats]
    # The session a file belongs to, from its path alone (None: cannot tell before parsing).
    path_key: Callable[[str], str | None]
    # Claude: subagent files join their parent session. Codex: one file per session, a repeat is a copy.
    files_share_sessions: bool


def _no_key(_path: str) -> str | None:
    return None


PROVIDERS: dict[str, _Provider] = {
    "claude-code": _Provider(claude.find_files, claude.parse_file, claude.session_key, True),
    "codex": _Provider(codex.find_files, codex.parse_file, _no_key, False),
}


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

    def add(self, st: SessionStats) -> None:
        self.sessions.add(st.session_id)
        _merge(self.prompts, st.prompts)
        _merge(self.tool_calls, st.tool_calls)
        _merge(self.files, st.files)
        _merge(self.failures, st.failures)
        _merge(self.usage, st.usage)
        _merge(self.cost, st.cost)
        first = st.first_at or _from_mtime(st.mtime)
        last = st.last_at or _from_mtime(st.mtime)
        self.first_at = first if self.first_at is None else min(self.first_at, first)
        self.last_at = last if self.last_at is None else max(self.last_at, last)


def _merge(mine: dict[str, T], theirs: dict[str, T]) -> None:
    """First seen wins: files are read most recent first, and a copied entry is identical anyway."""
    for key, value in theirs.items():
        mine.setdefault(key, value)


def _from_mtime(mtime: float) -> datetime:
    return datetime.fromtimestamp(mtime, UTC)


def _run(provider: _Provider, root: str, ws: Workspace, cutoff: float, max_sessions: int) -> _Acc:
    """Reads one provider's recent files, most recent first, keeping workspace sessions up to the limit."""
    acc = _Acc()
    recent: list[tuple[str, float]] = []
    for path, mtime in provider.find(root, acc.skipped):
        if mtime < cutoff:
            acc.skipped["too_old"] += 1
        else:
            recent.append((path, mtime))
    recent.sort(key=lambda f: (-f[1], f[0]))
    for path, mtime in recent:
        if len(acc.sessions) >= max_sessions and provider.path_key(path) not in acc.sessions:
            acc.skipped["over_limit"] += 1
            continue
        try:
            st = provider.parse(path, mtime, ws)
        except Exception:  # a reader bug must not take the whole stage down
            log.exception("session reader failed on %s", path)
            acc.skipped["reader_error"] += 1
            continue
        if st.in_workspace is not True:
            if st.skipped.get("unreadable_file"):
                acc.skipped["unreadable_file"] += 1
            else:
                acc.skipped["other_workspace" if st.in_workspace is False else "no_cwd"] += 1
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


def _summary(accs: list[_Acc]) -> dict[str, object]:
    """The ProviderInsights fields for one or several accumulators (overall = all providers)."""
    totals = [0, 0, 0, 0]
    for acc in accs:
        for usage in acc.usage.values():
            for i, n in enumerate(usage):
                totals[i] += n
    tokens = Tokens(input=totals[0], output=totals[1], cache_read=totals[2], cache_write=totals[3])
    costs = [c for acc in accs for c in acc.cost.values()]
    firsts = [a.first_at for a in accs if a.first_at is not None]
    lasts = [a.last_at for a in accs if a.last_at is not None]
    skipped: Counter[str] = Counter()
    for acc in accs:
        skipped.update(acc.skipped)
    return {
        "sessions": sum(len(a.sessions) for a in accs),
        "turns": sum(len(a.prompts) for a in accs),
        "tool_calls": sum(len(a.tool_calls) for a in accs),
        "tokens": tokens,
        "cost_usd": round(sum(costs), 6) if costs else None,
        "skipped": _counts(skipped.elements()) if skipped else {},
        "files": _counts(p for a in accs for paths in a.files.values() for p in paths),
        "tools": _counts(n for a in accs for n in a.tool_calls.values()),
        "failures": _counts(n for a in accs for n in a.failures.values()),
        "goals": _goals(p for a in accs for p in a.prompts.values()),
        "first_at": iso(min(firsts)) if firsts else None,
        "last_at": iso(max(lasts)) if lasts else None,
    }


def analyze_sessions(repo: str | Path, cfg: Sessions, now: datetime | None = None) -> Insights:
    """Insights from the enabled providers' recent sessions whose cwd lies inside `repo`.

    Never raises for bad session data: missing directories give empty results, every unusable file or
    line is counted in `skipped` (overall and per provider).
    """
    ws = Workspace(repo)
    moment = now or utcnow()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    cutoff = moment.timestamp() - cfg.since_days * 86400
    dirs = {"claude-code": cfg.claude_dir, "codex": cfg.codex_dir}
    accs: dict[str, _Acc] = {}
    for name in dict.fromkeys(cfg.providers):
        provider = PROVIDERS.get(name)
        if provider is None:
            continue
        root = os.path.expanduser(dirs[name])
        accs[name] = _run(provider, root, ws, cutoff, cfg.max_sessions)
    providers = {name: ProviderInsights.model_validate(_summary([acc])) for name, acc in accs.items()}
    return Insights.model_validate({**_summary(list(accs.values())), "providers": providers})
