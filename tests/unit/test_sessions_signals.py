"""Trouble signals: interruptions, repeated failures, sessions abandoned mid-error, unfinished work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from orchestration.sessions import analyze_sessions
from tests.unit.test_sessions import Claude, cfg, envelope, rollout, tool_use, usage


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "repo").mkdir()
    return tmp_path / "repo"


def write(path: Path, lines: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))


def bash(c: Claude, i: int, command: str, fails: bool, minute: int) -> list[dict[str, Any]]:
    return [
        c.assistant(f"m{i}", f"r{i}", minute, [tool_use(f"t{i}", "Bash", command=command)], usage(1, 1)),
        c.tool_result(f"t{i}", minute, is_error=fails),
    ]


def test_claude_session_abandoned_on_a_failing_command(tmp_path: Path, repo: Path) -> None:
    c = Claude(str(repo))
    write(
        tmp_path / "claude/projects/p" / f"{c.session}.jsonl",
        [
            c.prompt("make the tests pass", 1),
            *bash(c, 1, "cd app && pytest -q tests/", True, 2),
            *bash(c, 2, "pytest -q", True, 3),
        ],
    )
    ins = analyze_sessions(repo, cfg(tmp_path))
    assert ins.failures == {"pytest": 2}
    assert ins.repeated_failures == {"pytest": 2}
    assert ins.abandoned == 1
    [u] = ins.unfinished
    assert (u.provider, u.reason, u.failure, u.last_prompt) == ("claude-code", "error", "pytest", "make the tests pass")
    assert u.session_id == c.session


def test_an_answer_after_the_error_is_not_abandonment(tmp_path: Path, repo: Path) -> None:
    c = Claude(str(repo))
    write(
        tmp_path / "claude/projects/p" / f"{c.session}.jsonl",
        [
            c.prompt("fix it", 1),
            *bash(c, 1, "make test", True, 2),
            c.assistant(
                "m9", "r9", 3, [{"type": "text", "text": "The tests need a database; I stopped."}], usage(1, 1)
            ),
        ],
    )
    ins = analyze_sessions(repo, cfg(tmp_path))
    assert ins.failures == {"make test": 1} and ins.repeated_failures == {}
    assert ins.abandoned == 0 and ins.unfinished == []


def test_claude_interruption_is_counted_not_a_goal(tmp_path: Path, repo: Path) -> None:
    c = Claude(str(repo))
    write(
        tmp_path / "claude/projects/p" / f"{c.session}.jsonl",
        [
            c.prompt("refactor the billing module", 1),
            *bash(c, 1, "ls", False, 2),
            c.prompt([{"type": "text", "text": "[Request interrupted by user for tool use]"}], 3),
        ],
    )
    ins = analyze_sessions(repo, cfg(tmp_path))
    assert ins.interruptions == 1
    assert ins.goals == ["refactor the billing module"]
    [u] = ins.unfinished
    assert u.reason == "interrupted" and u.last_prompt == "refactor the billing module"


def test_codex_turn_aborted_and_failed_last_command(tmp_path: Path, repo: Path) -> None:
    meta = envelope("session_meta", 0, id="s1", cwd=str(repo))
    write(
        rollout(tmp_path, "rollout-a.jsonl"),
        [
            meta,
            envelope("event_msg", 1, type="user_message", message="upgrade the dependencies"),
            envelope(
                "event_msg", 2, type="exec_command_end", call_id="c1", command=["bash", "-lc", "npm test"], exit_code=1
            ),
        ],
    )
    write(
        rollout(tmp_path, "rollout-b.jsonl"),
        [
            envelope("session_meta", 0, id="s2", cwd=str(repo)),
            envelope("event_msg", 4, type="user_message", message="write the changelog"),
            envelope("event_msg", 5, type="turn_aborted", reason="interrupted"),
        ],
    )
    cx = analyze_sessions(repo, cfg(tmp_path, providers=["codex"])).providers["codex"]
    assert cx.interruptions == 1 and cx.abandoned == 1
    reasons = {u.session_id: (u.reason, u.failure, u.last_prompt) for u in cx.unfinished}
    assert reasons == {
        "s1": ("error", "npm test", "upgrade the dependencies"),
        "s2": ("interrupted", None, "write the changelog"),
    }
