"""Incremental analysis: a re-run reads only what changed and always agrees with a fresh full read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestration.models import Insights
from orchestration.sessions import _common, analyze_sessions, analyzer, cache
from tests.unit.test_sessions import Claude, cfg, envelope, rollout, tc, token_count, tool_use, usage


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "repo").mkdir()
    return tmp_path / "repo"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(path, start offset) of every read the readers make."""
    seen: list[tuple[str, int]] = []
    real = _common.read_objects

    def spy(path: str, skipped: Any, skip: Any = None, start: int = 0, pos: Any = None) -> Iterator[Any]:
        seen.append((path, start))
        return real(path, skipped, skip, start, pos)

    monkeypatch.setattr("orchestration.sessions.claude.read_objects", spy)
    monkeypatch.setattr("orchestration.sessions.codex.read_objects", spy)
    return seen


def append(path: Path, lines: list[Any], newline: bool = True) -> None:
    data = b"\n".join(orjson.dumps(x) for x in lines) + (b"\n" if newline else b"")
    with path.open("ab") as fh:
        fh.write(data)


def conversation(c: Claude, i: int) -> list[dict[str, Any]]:
    return [
        c.prompt(f"request number {i}", i % 60),
        c.assistant(
            f"msg_{i}",
            f"req_{i}",
            i % 60,
            [tool_use(f"toolu_{i}", "Edit", file_path=f"{c.cwd}/src/f{i % 3}.py")],
            usage(10 + i, 5, 100, 1000),
        ),
        c.tool_result(f"toolu_{i}", i % 60, is_error=i % 4 == 0),
    ]


def analyze(tmp: Path, repo: Path, cache_dir: Path | None) -> Insights:
    return analyze_sessions(repo, cfg(tmp), cache_dir=cache_dir, workers=1)


def same(a: Insights, b: Insights) -> None:
    da, db = a.model_dump(), b.model_dump()
    for d in (da, db):  # selection bookkeeping, not results
        for scope in [d, *d["providers"].values()]:
            scope["skipped"].pop("incomplete_line", None)
    assert da == db


def test_unchanged_files_are_not_opened_again(tmp_path: Path, repo: Path, reads: list[tuple[str, int]]) -> None:
    c = Claude(str(repo))
    path = tmp_path / "claude" / "projects" / "p" / f"{c.session}.jsonl"
    path.parent.mkdir(parents=True)
    append(path, [line for i in range(5) for line in conversation(c, i)])
    first = analyze(tmp_path, repo, tmp_path / "cache")
    assert reads == [(str(path), 0)]
    reads.clear()
    second = analyze(tmp_path, repo, tmp_path / "cache")
    assert reads == []
    same(first, second)
    assert second.sessions == 1 and second.turns == 5


def test_appended_lines_are_read_from_where_the_last_run_stopped(
    tmp_path: Path, repo: Path, reads: list[tuple[str, int]]
) -> None:
    c = Claude(str(repo))
    path = tmp_path / "claude" / "projects" / "p" / f"{c.session}.jsonl"
    path.parent.mkdir(parents=True)
    append(path, [line for i in range(3) for line in conversation(c, i)])
    analyze(tmp_path, repo, tmp_path / "cache")
    size = path.stat().st_size
    # A line still being written (no newline yet) is left for later.
    tail = conversation(c, 3)
    append(path, tail[:1])
    append(path, tail[1:2], newline=False)
    reads.clear()
    partial = analyze(tmp_path, repo, tmp_path / "cache")
    assert reads == [(str(path), size)]
    assert partial.turns == 4 and partial.tool_calls == 3
    append(path, [])  # the newline that completes the line
    append(path, tail[2:])
    reads.clear()
    incremental = analyze(tmp_path, repo, tmp_path / "cache")
    assert len(reads) == 1 and reads[0][1] > size
    same(incremental, analyze(tmp_path, repo, None))
    assert incremental.tool_calls == 4


def test_truncated_or_rewritten_file_is_read_again(tmp_path: Path, repo: Path, reads: list[tuple[str, int]]) -> None:
    c = Claude(str(repo))
    path = tmp_path / "claude" / "projects" / "p" / f"{c.session}.jsonl"
    path.parent.mkdir(parents=True)
    append(path, [line for i in range(4) for line in conversation(c, i)])
    analyze(tmp_path, repo, tmp_path / "cache")
    # Rewritten in place with different content of a larger size: the old offset's tail no longer matches.
    data = path.read_bytes().replace(b"request number", b"REQUEST NUMBER") + b"\n"
    with path.open("r+b") as fh:
        fh.write(data)
    reads.clear()
    rewritten = analyze(tmp_path, repo, tmp_path / "cache")
    assert reads == [(str(path), 0)]
    assert any(g.startswith("REQUEST") for g in rewritten.goals)
    # Truncated to one conversation.
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in conversation(c, 0)))
    reads.clear()
    truncated = analyze(tmp_path, repo, tmp_path / "cache")
    assert reads == [(str(path), 0)]
    same(truncated, analyze(tmp_path, repo, None))
    assert truncated.turns == 1


def test_replaced_file_and_a_session_that_started_elsewhere(tmp_path: Path, repo: Path) -> None:
    elsewhere = Claude(str(tmp_path / "other"), session="11111111-2222-3333-4444-555555555555")
    path = tmp_path / "claude" / "projects" / "p" / f"{elsewhere.session}.jsonl"
    path.parent.mkdir(parents=True)
    append(path, conversation(elsewhere, 1))
    assert analyze(tmp_path, repo, tmp_path / "cache").sessions == 0
    # The session later works inside the repo: it still belongs where it started (its first cwd).
    inside = Claude(str(repo), session=elsewhere.session)
    inside.n = elsewhere.n  # line uuids go on being unique
    append(path, conversation(inside, 2))
    grown = analyze(tmp_path, repo, tmp_path / "cache")
    assert grown.sessions == 0
    same(grown, analyze(tmp_path, repo, None))
    # Replaced by a new file (new inode) that starts inside the repo.
    path.unlink()
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in conversation(inside, 7)))
    replaced = analyze(tmp_path, repo, tmp_path / "cache")
    assert replaced.turns == 1 and replaced.goals == ["request number 7"]


def test_codex_rollout_grows(tmp_path: Path, repo: Path, reads: list[tuple[str, int]]) -> None:
    path = rollout(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    append(
        path,
        [
            envelope("session_meta", 0, id="s1", cwd=str(repo)),
            envelope("event_msg", 1, type="user_message", message="first"),
        ],
    )
    append(path, [token_count(2, tc(1000, 200, 50, 10), tc(1000, 200, 50, 10))])
    first = analyze(tmp_path, repo, tmp_path / "cache").providers["codex"]
    assert first.tokens.input == 800 and first.turns == 1
    append(path, [envelope("event_msg", 3, type="user_message", message="second")])
    append(path, [token_count(4, tc(3000, 700, 90, 10), tc(2000, 500, 40, 0))])
    reads.clear()
    grown = analyze(tmp_path, repo, tmp_path / "cache")
    assert reads and reads[0][1] > 0
    same(grown, analyze(tmp_path, repo, None))
    assert grown.providers["codex"].tokens.input == 2300 and grown.turns == 2


def test_damaged_cache_is_rebuilt(tmp_path: Path, repo: Path) -> None:
    c = Claude(str(repo))
    path = tmp_path / "claude" / "projects" / "p" / f"{c.session}.jsonl"
    path.parent.mkdir(parents=True)
    append(path, conversation(c, 1))
    analyze(tmp_path, repo, tmp_path / "cache")
    files = list((tmp_path / "cache").glob("sessions-*.pickle"))
    assert files
    for f in (tmp_path / "cache").iterdir():  # the per-file caches and the stored result
        f.write_bytes(b"not a pickle")
    assert analyze(tmp_path, repo, tmp_path / "cache").turns == 1
    assert all(cache.load(f) for f in files if "claude" in f.name)


def test_parallel_scan_gives_the_same_result(tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(6):
        c = Claude(str(repo), session=f"{n:08d}-0000-0000-0000-000000000000")
        path = tmp_path / "claude" / "projects" / "p" / f"{c.session}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        append(path, [line for i in range(n + 1) for line in conversation(c, i + 10 * n)])
    serial = analyze_sessions(repo, cfg(tmp_path), cache_dir=None, workers=1)
    monkeypatch.setattr(analyzer, "PARALLEL_MIN_BYTES", 0)
    parallel = analyze_sessions(repo, cfg(tmp_path), cache_dir=tmp_path / "c", workers=2)
    same(serial, parallel)
    assert parallel.sessions == 6
    again = analyze_sessions(repo, cfg(tmp_path), cache_dir=tmp_path / "c", workers=2)
    same(serial, again)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=0, max_value=100_000), min_size=1, max_size=6))
def test_any_sequence_of_partial_writes_ends_equal_to_a_full_read(tmp_path_factory: Any, cuts: list[int]) -> None:
    """The file is written in arbitrary pieces (mid-line too), analyzing after each piece."""
    tmp = tmp_path_factory.mktemp("grow")
    repo = tmp / "repo"
    repo.mkdir()
    c = Claude(str(repo))
    data = b"".join(orjson.dumps(x) + b"\n" for i in range(8) for x in conversation(c, i))
    path = tmp / "claude" / "projects" / "p" / f"{c.session}.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    written = 0
    for cut in sorted({min(cut, len(data)) for cut in cuts}):
        with path.open("ab") as fh:
            fh.write(data[written:cut])
        written = cut
        analyze(tmp, repo, tmp / "cache")
    with path.open("ab") as fh:
        fh.write(data[written:])
    same(analyze(tmp, repo, tmp / "cache"), analyze(tmp, repo, None))


def test_the_cli_progress_bar_starts_no_thread_so_workers_are_forked(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`orchestrate analyze` draws its bar from the analyzer's calls: with a refresh thread alive, the analyzer
    would start its workers with spawn, and each would import the whole CLI again."""
    import io
    import multiprocessing
    import threading

    from rich.console import Console

    from orchestration import cli

    for n in range(4):
        c = Claude(str(repo), session=f"{n:08d}-0000-0000-0000-000000000000")
        path = tmp_path / "claude" / "projects" / "p" / f"{c.session}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        append(path, [line for i in range(n + 2) for line in conversation(c, i + 10 * n)])
    screen = io.StringIO()
    monkeypatch.setattr(cli, "err", Console(file=screen, force_terminal=True, width=100))
    monkeypatch.setattr(analyzer, "PARALLEL_MIN_BYTES", 0)
    methods: list[str | None] = []
    real_context = multiprocessing.get_context

    def context(method: str | None = None) -> Any:
        methods.append(method)
        return real_context(method)

    monkeypatch.setattr(analyzer.multiprocessing, "get_context", context)
    threads = threading.active_count()
    seen: list[tuple[str, int, int, int]] = []
    bar = cli._ReadingBar()

    def tick(provider: str, done: int, total: int) -> None:
        bar.tick(provider, done, total)
        seen.append((provider, done, total, threading.active_count()))

    try:
        ins = analyze_sessions(repo, cfg(tmp_path), cache_dir=tmp_path / "c", workers=2, progress=tick)
    finally:
        bar.stop()
    assert ins.sessions == 4
    assert methods == ["fork" if threads == 1 else "spawn"]
    assert ("claude-code", 0, 4, threads) in seen and ("claude-code", 4, 4) in [s[:3] for s in seen]
    assert "reading claude-code sessions" in screen.getvalue()  # drawn, then cleared (transient)
    assert threading.active_count() == threads

    # Answered from the cache: nothing is read, no bar is drawn.
    quiet = cli._ReadingBar()
    analyze_sessions(repo, cfg(tmp_path), cache_dir=tmp_path / "c", workers=2, progress=quiet.tick)
    assert quiet.progress is None
