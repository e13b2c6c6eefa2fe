"""Unfinished work, its signals merged: a command that kept failing, the sessions it failed in, the request
those sessions served, the files they read and edited, the last error output and the agent's last words are
one piece of work, not four.

Runs are grouped by what failed (`Run.target`: the command with its arguments and directory), so that
`pytest tests/a.py` and `pytest tests/b.py` are two pieces of work. A target whose latest run passed is done.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from orchestration.models import SessionRef, Work
from orchestration.sessions._common import MAX_PROMPT_CHARS, Run, SessionStats

MAX_WORK = 6  # pieces of work kept (they travel with the cycle's context)
MAX_SESSIONS = 5
MAX_FILES = 8
MAX_SUBJECTS = 5
MAX_INTERRUPTED = 3
MAX_REQUEST_CHARS = 500

EDIT_TOOLS = frozenset({"Edit", "Write", "MultiEdit", "NotebookEdit", "apply_patch"})
READ_TOOLS = frozenset({"Read"})

# What test runners and compilers print about what failed, one pattern per family.
_OUTPUT_SUBJECTS = (
    re.compile(r"^(?:FAILED|ERROR) ([\w./-]+\.py(?:::[^\s]+)?)", re.M),  # pytest's short summary
    re.compile(r"^\s*(?:FAIL|✕)\s+([\w./@-]+\.[cm]?[jt]sx?)\b", re.M),  # jest, vitest
    re.compile(r"^\s*--- FAIL: (\w+)", re.M),  # go test: the test
    re.compile(r"^FAIL\s+([\w./-]+/[\w./-]+)\s", re.M),  # go test: the package
    re.compile(r"^test (\S+) \.\.\. FAILED", re.M),  # cargo test
    re.compile(r"^([\w./-]+\.[A-Za-z]{1,5})\(\d+,\d+\): error", re.M),  # tsc
    re.compile(r"^([\w./-]+\.[A-Za-z]{1,5}):\d+(?::\d+)?: (?:error|[A-Z]{1,3}\d{3,4}\b)", re.M),  # mypy, ruff, gcc
)
_PATH_LIKE = re.compile(r"^[\w.@-]*(?:/[\w.@*-]*)+$|^[\w@-][\w.@-]*\.[A-Za-z]{1,5}$")


def subjects(run: Run) -> list[str]:
    """The tests or files a failing run names: path-like arguments of the command, then what its output
    reports as failing, each once."""
    found: list[str] = []
    args = run.target.split(" (in ", 1)[0].split()[1:]
    for word in args:
        path = word.split("::", 1)[0]
        if _PATH_LIKE.match(path) and not path.startswith("-"):
            found.append(word.removeprefix("./") if word.startswith("./") and "/" in word[2:] else word)
    for pattern in _OUTPUT_SUBJECTS:
        found += pattern.findall(run.output)
    return list(dict.fromkeys(found))[:MAX_SUBJECTS]


@dataclass
class _Session:
    """One session's share of the evidence (its main file and its subagents' files together)."""

    provider: str
    session_id: str
    prompts: list[tuple[datetime | None, str]] = field(default_factory=list)
    edited: Counter[str] = field(default_factory=Counter)
    read: Counter[str] = field(default_factory=Counter)
    last_message: tuple[str | None, str] | None = None
    end: str | None = None
    ends_on_error: bool = False
    ends_interrupted: bool = False
    last_run: Run | None = None

    def add(self, st: SessionStats) -> None:
        main = f"{os.sep}subagents{os.sep}" not in st.path
        self.prompts += st.prompts.values()
        for key, paths in st.files.items():
            tool = st.tool_calls.get(key, "")
            counter = self.edited if tool in EDIT_TOOLS else self.read if tool in READ_TOOLS else None
            if counter is not None:
                counter.update(paths)
        if st.ts_max and (self.end is None or st.ts_max > self.end):
            self.end = st.ts_max
        if main:
            if st.last_message is not None:
                self.last_message = st.last_message
            self.ends_on_error = bool(st.ends_on_error)
            self.ends_interrupted = st.ends_interrupted
            if st.runs:
                self.last_run = list(st.runs.values())[-1]

    def ref(self) -> SessionRef:
        return SessionRef(provider=self.provider, session_id=self.session_id, at=self.end)

    def request_before(self, at: str | None) -> str:
        """The person's last request in this session before `at` (any of them when there is no time)."""
        floor = datetime.min.replace(tzinfo=UTC)
        limit = _parse(at)
        earlier = [p for p in self.prompts if limit is None or p[0] is None or p[0] <= limit]
        pick = max(earlier or self.prompts, key=lambda p: p[0] or floor, default=None)
        return pick[1].strip()[:MAX_REQUEST_CHARS] if pick else ""


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    try:
        dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def work_items(named: list[tuple[str, list[SessionStats]]]) -> list[Work]:
    """The unfinished work in these sessions (provider → its files' stats, most recent first): failing
    targets, most recent first, then requests the person interrupted and did not take up again."""
    sessions: dict[tuple[str, str], _Session] = {}
    by_target: dict[str, list[tuple[Run, _Session]]] = {}
    seen: set[str] = set()
    for provider, stats in named:
        for st in stats:
            view = sessions.setdefault((provider, st.session_id), _Session(provider, st.session_id))
            view.add(st)
            for key, run in st.runs.items():
                if key not in seen:  # a run copied into a resumed session's file counts once
                    seen.add(key)
                    by_target.setdefault(run.target, []).append((run, view))
    failing = [w for target, runs in by_target.items() if (w := _failing(target, runs)) is not None]
    failing.sort(key=lambda w: w.last_at or "", reverse=True)
    interrupted = [
        _interrupted(s) for s in sorted(sessions.values(), key=lambda s: s.end or "", reverse=True) if _left(s)
    ][:MAX_INTERRUPTED]
    return (failing + interrupted)[:MAX_WORK]


def _failing(target: str, runs: list[tuple[Run, _Session]]) -> Work | None:
    """A target whose latest run failed, and that failed twice or more or made a session end on it."""
    runs = sorted(runs, key=lambda r: r[0].at or "")
    last, last_session = runs[-1]
    if last.ok:
        return None
    failed = [(r, s) for r, s in runs if not r.ok]
    abandoned = any(s.ends_on_error and s.last_run is r for r, s in failed)
    if len(failed) < 2 and not abandoned:
        return None
    views = list({id(s): s for _, s in reversed(failed)}.values())[:MAX_SESSIONS]
    request = last_session.request_before(last.at) or next((r for s in views if (r := s.request_before(None))), "")
    edited: Counter[str] = Counter()
    read: Counter[str] = Counter()
    for s in views:
        edited.update(s.edited)
        read.update(s.read)
    return Work(
        kind="failing",
        target=target,
        command=last.command,
        subjects=subjects(last) or next((found for r, _ in reversed(failed) if (found := subjects(r))), []),
        failures=len(failed),
        runs=len(runs),
        abandoned=abandoned,
        sessions=[s.ref() for s in views],
        first_at=failed[0][0].at,
        last_at=last.at or last_session.end,
        request=request,
        edited=_ranked(edited),
        read=_ranked(read - edited),
        error=last.output,
        last_message=last_session.last_message[1] if last_session.last_message else "",
    )


def _left(s: _Session) -> bool:
    return s.ends_interrupted and bool(s.prompts)


def _interrupted(s: _Session) -> Work:
    return Work(
        kind="interrupted",
        sessions=[s.ref()],
        last_at=s.end,
        request=s.request_before(None)[:MAX_PROMPT_CHARS],
        edited=_ranked(s.edited),
        read=_ranked(s.read - s.edited),
        last_message=s.last_message[1] if s.last_message else "",
    )


def _ranked(counts: Counter[str]) -> list[str]:
    return [path for path, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if path != "."][:MAX_FILES]
