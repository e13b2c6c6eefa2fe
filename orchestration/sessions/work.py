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

from orchestration.models import SessionRef, Work, parse_ts
from orchestration.sessions._common import MAX_PROMPT_CHARS, Run, SessionStats, command_key, split_target

MAX_WORK = 6  # pieces of work kept (they travel with the cycle's context)
MAX_SESSIONS = 5
MAX_FILES = 8
MAX_SUBJECTS = 5
MAX_INTERRUPTED = 3
MAX_REQUEST_CHARS = 500

EDIT_TOOLS = frozenset({"Edit", "Write", "MultiEdit", "NotebookEdit", "apply_patch"})
READ_TOOLS = frozenset({"Read"})

# What test runners and compilers print about what failed, one pattern per family. Group 1 is the test or
# file; `_FILE_PATTERNS` name files relative to the directory the command ran in.
_PYTEST = re.compile(r"^(?:FAILED|ERROR) ([\w./-]+\.py(?:::[^\s]+)?)", re.M)
_JEST = re.compile(r"^\s*(?:FAIL|✕)\s+([\w./@-]+\.[cm]?[jt]sx?)\b", re.M)
_GO_TEST = re.compile(r"^\s*--- FAIL: (\w+)", re.M)
_GO_PACKAGE = re.compile(r"^FAIL\s+([\w.-]+(?:/[\w.-]+)+)\s", re.M)
_CARGO_TEST = re.compile(r"^test (\S+) \.\.\. FAILED", re.M)
_UNITTEST = re.compile(r"^(?:FAIL|ERROR): \w+ \(([\w.]+)\)", re.M)  # unittest, Django: the dotted test id
_TSC = re.compile(r"^([\w./-]+\.[cm]?[jt]sx?)(?:\(\d+,\d+\):|:\d+:\d+ -) error", re.M)
_LOCATED = re.compile(r"^([\w./-]+\.[A-Za-z]{1,5}):\d+(?::\d+)?: (?:error|[A-Z]{1,3}\d{3,4}\b)", re.M)  # mypy, ruff
_GO_BUILD = re.compile(r"^([\w./-]+\.go):\d+:\d+: ", re.M)
_RUSTC = re.compile(r"^\s*--> ([\w./-]+\.rs):\d+:\d+", re.M)
_FILE_PATTERNS = (_PYTEST, _JEST, _TSC, _LOCATED, _GO_BUILD, _RUSTC)
_NAME_PATTERNS = (_GO_TEST, _GO_PACKAGE, _CARGO_TEST, _UNITTEST)
_DOTTED = re.compile(r"^[A-Za-z_]\w*(?:\.\w+){2,}$")  # a test label: app.tests.SomeTests
_SOURCE_SUFFIXES = frozenset({"py", "js", "jsx", "ts", "tsx", "go", "rs", "java", "kt", "rb", "c", "h", "cpp"})
_PATH_LIKE = re.compile(r"^[\w.@-]*(?:/[\w.@*-]*)+$|^[\w@-][\w.@-]*\.[A-Za-z]{1,5}$")


def subjects(run: Run) -> list[str]:
    """The tests or files a failing run names: path-like arguments of the command, then what its output
    reports as failing, each once. Files are named from the repository's root (a runner started in `web/`
    prints `src/x.ts`: that is `web/src/x.ts`)."""
    target, where = split_target(run.target)
    base = where or ""
    found: list[str] = []
    words = target.split()
    if words and words[0].startswith("python") and len(words) > 1 and words[1].endswith(".py"):
        words = words[1:]  # `python manage.py test …`: the script is what runs, not what failed
    for word in words[1:]:
        path = word.split("::", 1)[0]
        if _DOTTED.match(word) and word.rsplit(".", 1)[1] not in _SOURCE_SUFFIXES:
            found.append(word)
        elif _PATH_LIKE.match(path) and not path.startswith("-"):
            found.append(_under(base, word.removeprefix("./") if "/" in word[2:] else word))
    for pattern in _FILE_PATTERNS:
        found += [_under(base, m) for m in pattern.findall(run.output)]
    for pattern in _NAME_PATTERNS:
        found += pattern.findall(run.output)
    return list(dict.fromkeys(found))[:MAX_SUBJECTS]


def _under(base: str, path: str) -> str:
    """`path` (relative to the directory `base` a command ran in) from the repository's root."""
    if not base or path.startswith(("/", "../")) or path.startswith(base.rstrip("/") + "/"):
        return path
    return f"{base.rstrip('/')}/{path}"


def _shared(subject: str) -> bool:
    """Whether two failures naming this subject are the same problem: a file or a test, not a wildcard."""
    return "..." not in subject and subject not in (".", "./")


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
        limit = parse_ts(at)
        earlier = [p for p in self.prompts if limit is None or p[0] is None or p[0] <= limit]
        pick = max(earlier or self.prompts, key=lambda p: p[0] or floor, default=None)
        return pick[1].strip()[:MAX_REQUEST_CHARS] if pick else ""


def work_items(named: list[tuple[str, list[SessionStats]]]) -> tuple[list[Work], list[str]]:
    """The unfinished work in these sessions (provider → its files' stats, most recent first): failing
    targets, most recent first, then requests the person interrupted and did not take up again; and the
    names (as in `failures`) of the commands that failed and then passed, so that nothing takes them up."""
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
    failing = [w for group in _grouped(by_target) if (w := _failing(group)) is not None]
    failing.sort(key=lambda w: w.last_at or "", reverse=True)
    interrupted = [
        _interrupted(s) for s in sorted(sessions.values(), key=lambda s: s.end or "", reverse=True) if _left(s)
    ][:MAX_INTERRUPTED]
    fixed = {
        command_key(split_target(runs[-1][0].target)[0])
        for runs in by_target.values()
        if max(runs, key=lambda r: r[0].at or "")[0].ok and any(not r.ok for r, _ in runs)
    }
    unfixed = {command_key(w.command) for w in failing if w.command}
    return (failing + interrupted)[:MAX_WORK], sorted(fixed - unfixed)


def _grouped(by_target: dict[str, list[tuple[Run, _Session]]]) -> list[list[tuple[Run, _Session]]]:
    """The runs of each target whose latest run failed, with the targets whose failures name the same test
    or file joined (`npm run build` and `npx tsc` failing on one type error are one problem)."""
    open_targets: list[tuple[set[str], list[tuple[Run, _Session]]]] = []
    for runs in by_target.values():
        runs = sorted(runs, key=lambda r: r[0].at or "")
        if runs[-1][0].ok:
            continue  # its latest run passed: done
        named = {x for r, _ in runs if not r.ok for x in subjects(r) if _shared(x)}
        open_targets.append((named, runs))
    groups: list[tuple[set[str], list[tuple[Run, _Session]]]] = []
    for named, runs in open_targets:
        joined = [g for g in groups if named & g[0]]
        for g in joined:
            groups.remove(g)
            named |= g[0]
            runs = runs + g[1]
        groups.append((named, sorted(runs, key=lambda r: r[0].at or "")))
    return [runs for _, runs in groups]


def _failing(runs: list[tuple[Run, _Session]]) -> Work | None:
    """Failing work: its latest run failed, and it failed twice or more or made a session end on it."""
    last, last_session = runs[-1]
    target = last.target
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
