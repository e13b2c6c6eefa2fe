"""Claude Code's command line and stream-json parser, fed the real captured stdout of claude 2.1.328."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from orchestration.agents.base import RunTally
from orchestration.agents.claude import ClaudeStream, build_argv
from orchestration.agents.process import Verdict
from orchestration.config import WorkspaceConfig, parse_config

pytestmark = pytest.mark.timeout(30)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SAMPLE = FIXTURES / "claude_stream_sample.jsonl"
# The cwd of the captured run: tool paths in the sample are absolute paths below it.
SAMPLE_CWD = Path("/tmp/cap-_q7fonm9/repo")
SAMPLE_SESSION = "27756cac-91f3-4743-abb1-5376765b0fee"


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for k, d in self.events if k == kind]


def make_stream(worktree: Path = SAMPLE_CWD, max_cost_usd: float = 100.0) -> tuple[ClaudeStream, Recorder]:
    rec = Recorder()
    return ClaudeStream(rec, RunTally(), worktree, max_cost_usd, {}), rec


def sample_lines() -> list[bytes]:
    return [line for line in SAMPLE.read_bytes().splitlines() if line.strip()]


def line(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def result_line(**over: Any) -> bytes:
    ev = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "num_turns": 3,
        "result": "ok",
        "session_id": "s-1",
        "total_cost_usd": 0.5,
        "usage": {
            "input_tokens": 1,
            "output_tokens": 2,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        },
    }
    ev.update(over)
    return line(ev)


# -- the real sample ------------------------------------------------------------------------------


def test_sample_is_the_real_five_line_capture() -> None:
    lines = sample_lines()
    assert len(lines) == 5
    assert json.loads(lines[0])["claude_code_version"] == "2.1.328"


def test_sample_yields_normalized_events_in_order() -> None:
    stream, rec = make_stream()
    verdicts = [stream.feed(raw) for raw in sample_lines()]

    assert verdicts[:4] == [Verdict.CONTINUE] * 4
    assert verdicts[4] == Verdict.FINAL
    kinds = rec.kinds()
    for kind in (
        "agent.started",
        "agent.tool_call",
        "agent.file_change",
        "agent.tool_result",
        "agent.message",
        "agent.usage",
    ):
        assert kind in kinds, kind
    # Order of the stream: start, the Write call and its file change, its result, the closing text.
    assert kinds.index("agent.started") < kinds.index("agent.tool_call") < kinds.index("agent.file_change")
    assert kinds.index("agent.file_change") < kinds.index("agent.tool_result") < kinds.index("agent.message")

    started = rec.of("agent.started")
    assert len(started) == 1
    assert started[0]["session_id"] == SAMPLE_SESSION
    assert started[0]["agent"] == "claude-code"
    assert started[0]["model"] == "claude-opus-5-5"

    assert rec.of("agent.tool_call") == [{"tool": "Write", "path": "hello.txt"}]
    assert rec.of("agent.file_change") == [{"path": "hello.txt", "tool": "Write"}]
    (tool_result,) = rec.of("agent.tool_result")
    assert tool_result["tool"] == "Write"
    assert tool_result["is_error"] is False
    assert tool_result["output"].startswith("File created successfully")
    assert rec.of("agent.message") == [{"text": "Done."}]

    usage = rec.of("agent.usage")
    assert usage[-1]["estimated"] is False  # the final result's figures
    assert usage[-1]["cost_usd"] == pytest.approx(0.066754)
    assert all(u["estimated"] for u in usage[:-1])
    for data in (d for _, d in rec.events):
        json.dumps(data)  # every event's data is JSON-serializable


def test_sample_tally() -> None:
    stream, _ = make_stream()
    for raw in sample_lines():
        stream.feed(raw)
    t = stream.tally
    assert t.success is True
    assert t.final_seen is True
    assert t.error is None
    assert t.num_turns == 2
    assert t.cost_usd == pytest.approx(0.066754)
    assert t.cost_reported is True
    assert stream.current_cost() == pytest.approx(0.066754)
    assert t.session_id == SAMPLE_SESSION
    assert t.model == "claude-opus-5-5"
    assert t.files == {"hello.txt"}
    assert t.summary == "Done."
    assert (t.input_tokens, t.output_tokens) == (8, 52)
    assert (t.cached_tokens, t.cache_write_tokens) == (12535, 12635)
    assert t.bad_lines == 0
    assert t.events == 5


def test_path_outside_worktree_is_kept_as_given(tmp_path: Path) -> None:
    stream, rec = make_stream(worktree=tmp_path / "elsewhere")
    for raw in sample_lines():
        stream.feed(raw)
    assert rec.of("agent.tool_call")[0]["path"] == "/tmp/cap-_q7fonm9/repo/hello.txt"


def test_bash_tool_use_emits_command() -> None:
    stream, rec = make_stream()
    stream.feed(
        line(
            {
                "type": "assistant",
                "message": {
                    "id": "m1",
                    "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "pytest -q"}}],
                },
            }
        )
    )
    assert rec.of("agent.tool_call") == [{"tool": "Bash", "command": "pytest -q"}]
    assert rec.of("agent.command") == [{"command": "pytest -q"}]
    assert rec.of("agent.file_change") == []


# -- success is read from the result event ------------------------------------------------------


def test_api_failure_as_success_subtype_with_is_error_is_a_failure() -> None:
    # CLAUDE_NOTES.md: a client timeout ends with subtype "success" but is_error true.
    stream, _ = make_stream()
    verdict = stream.feed(
        result_line(is_error=True, total_cost_usd=0, result="Request timed out.", terminal_reason="api_error")
    )
    assert verdict == Verdict.FINAL
    assert stream.tally.final_seen is True
    assert stream.tally.success is False
    assert stream.tally.error


@pytest.mark.parametrize("subtype", ["error_max_turns", "error_max_budget_usd", "error_during_execution"])
def test_error_subtypes_are_failures(subtype: str) -> None:
    stream, _ = make_stream()
    verdict = stream.feed(result_line(subtype=subtype, is_error=True, errors=["Reached maximum"]))
    assert verdict == Verdict.FINAL
    assert stream.tally.success is False
    assert stream.tally.error == subtype


def test_max_budget_result_keeps_reported_cost_despite_zero_usage() -> None:
    # CLAUDE_NOTES.md: in error_max_budget_usd the usage is all zeros while total_cost_usd is right.
    stream, _ = make_stream()
    stream.feed(sample_lines()[1])  # an assistant line with usage
    stream.feed(
        result_line(
            subtype="error_max_budget_usd",
            is_error=True,
            total_cost_usd=0.0635,
            usage={
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 0,
            },
        )
    )
    assert stream.tally.cost_usd == pytest.approx(0.0635)
    assert stream.tally.input_tokens == 4  # the streamed figure is not wiped by the zeros
    assert stream.tally.success is False


def test_no_result_event_leaves_success_unknown() -> None:
    stream, _ = make_stream()
    for raw in sample_lines()[:4]:
        stream.feed(raw)
    assert stream.tally.success is None
    assert stream.tally.final_seen is False


# -- bad input is counted, never raised ---------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"not json at all",
        b'{"trunc',
        b"\xff\xfe\x00garbage",
        b"[1, 2]",
        b"42",
        b'"a string"',
        b"null",
    ],
)
def test_garbage_and_non_object_json_are_bad_lines(raw: bytes) -> None:
    stream, rec = make_stream()
    assert stream.feed(raw) == Verdict.CONTINUE
    assert stream.tally.bad_lines == 1
    assert rec.events == []


def test_blank_lines_are_ignored() -> None:
    stream, _ = make_stream()
    assert stream.feed(b"\n") == Verdict.CONTINUE
    assert stream.feed(b"   ") == Verdict.CONTINUE
    assert stream.tally.bad_lines == 0
    assert stream.tally.events == 0


@pytest.mark.parametrize(
    "ev",
    [
        {"type": "assistant", "message": 42},
        {"type": "assistant", "message": "text"},
        {"type": "assistant", "message": [1, 2]},
        {"type": "assistant", "message": {"id": "m1", "content": "str"}},
        {"type": "assistant", "message": {"id": "m1", "content": 7}},
        {"type": "assistant", "message": {"id": "m1", "content": [], "usage": "lots"}},
        {"type": "assistant", "message": {"id": "m1", "content": [], "usage": [1, 2]}},
    ],
    ids=["message-int", "message-str", "message-list", "content-str", "content-int", "usage-str", "usage-list"],
)
def test_wrong_shaped_assistant_messages_are_counted(ev: dict[str, Any]) -> None:
    stream, _ = make_stream()
    assert stream.feed(line(ev)) == Verdict.CONTINUE
    assert stream.tally.bad_lines == 1


@pytest.mark.parametrize(
    "ev",
    [
        {"type": "user", "message": 42},
        {"type": "user", "message": {"content": [{"type": "tool_result", "content": 5}]}},
        {"type": "user", "message": {"content": [{"type": "tool_result", "content": [1, {"text": 2}]}]}},
        {
            "type": "assistant",
            "message": {
                "id": 5,
                "content": [{"type": "tool_use", "name": 3, "input": "x"}],
                "usage": {"input_tokens": "many", "output_tokens": -3},
            },
        },
        {"type": "assistant", "message": {"content": [None, 1, {"type": "text", "text": 9}]}},
        {"type": "system", "subtype": "init", "session_id": 12, "model": ["x"]},
        {
            "type": "result",
            "subtype": 3,
            "is_error": "yes",
            "num_turns": "two",
            "usage": "none",
            "total_cost_usd": "0.1",
        },
        {"type": "something_new", "payload": {"x": 1}},
        {"no_type": True},
    ],
)
def test_odd_lines_never_raise(ev: dict[str, Any]) -> None:
    stream, _ = make_stream()
    verdict = stream.feed(line(ev))
    assert verdict in (Verdict.CONTINUE, Verdict.FINAL)


def test_stream_keeps_working_after_bad_lines() -> None:
    stream, rec = make_stream()
    lines = sample_lines()
    junk = [b"not json", b"[1]", line({"type": "assistant", "message": 42})]
    for raw in [lines[0], *junk, *lines[1:]]:
        stream.feed(raw)
    assert stream.tally.bad_lines == 3
    assert stream.tally.success is True
    assert stream.tally.files == {"hello.txt"}
    assert rec.of("agent.message") == [{"text": "Done."}]


# -- cost ----------------------------------------------------------------------------------------


def test_cost_limit_from_streamed_usage() -> None:
    # Unknown model "claude-opus-5-5" is priced at the expensive fallback: 12.5k cache-write tokens > $0.01.
    stream, _ = make_stream(max_cost_usd=0.01)
    lines = sample_lines()
    assert stream.feed(lines[0]) == Verdict.CONTINUE
    assert stream.feed(lines[1]) == Verdict.STOP_COST
    assert stream.current_cost() >= 0.01
    assert stream.tally.cost_reported is False


def test_cost_under_limit_continues() -> None:
    stream, _ = make_stream(max_cost_usd=100.0)
    assert [stream.feed(raw) for raw in sample_lines()[:4]] == [Verdict.CONTINUE] * 4
    assert 0 < stream.current_cost() < 100


def test_config_prices_override_builtin() -> None:
    cfg = parse_config(
        {
            "workspace": {"repo": "/tmp/r"},
            "budget": {"prices": {"m-x": {"input_per_mtok": 1_000_000, "output_per_mtok": 0}}},
        }
    )
    rec = Recorder()
    stream = ClaudeStream(rec, RunTally(), SAMPLE_CWD, 1.5, cfg.budget.prices)
    assert (
        stream.feed(
            line(
                {
                    "type": "assistant",
                    "message": {
                        "id": "m1",
                        "model": "m-x",
                        "content": [],
                        "usage": {"input_tokens": 1, "output_tokens": 0},
                    },
                }
            )
        )
        == Verdict.CONTINUE
    )
    assert stream.current_cost() == pytest.approx(1.0)
    assert (
        stream.feed(
            line(
                {
                    "type": "assistant",
                    "message": {
                        "id": "m2",
                        "model": "m-x",
                        "content": [],
                        "usage": {"input_tokens": 1, "output_tokens": 0},
                    },
                }
            )
        )
        == Verdict.STOP_COST
    )


def test_usage_of_one_message_on_several_lines_counts_once() -> None:
    # One API response with text + two tool calls arrives as one assistant line per block, same message id.
    stream, rec = make_stream()
    usage = {
        "input_tokens": 100,
        "output_tokens": 10,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 50,
    }
    blocks = [
        {"type": "text", "text": "Writing two files."},
        {"type": "tool_use", "id": "t1", "name": "Write", "input": {"file_path": "a.txt"}},
        {"type": "tool_use", "id": "t2", "name": "Write", "input": {"file_path": "b.txt"}},
    ]
    for block in blocks:
        stream.feed(
            line(
                {
                    "type": "assistant",
                    "message": {"id": "msg_same", "model": "claude-sonnet-4-5", "content": [block], "usage": usage},
                }
            )
        )
    t = stream.tally
    assert (t.input_tokens, t.output_tokens, t.cached_tokens, t.cache_write_tokens) == (100, 10, 1000, 50)
    assert len(rec.of("agent.usage")) == 1
    single = stream.current_cost()

    # A second message adds its own usage once.
    stream.feed(
        line(
            {
                "type": "assistant",
                "message": {"id": "msg_next", "model": "claude-sonnet-4-5", "content": [], "usage": usage},
            }
        )
    )
    assert (t.input_tokens, t.output_tokens) == (200, 20)
    assert stream.current_cost() == pytest.approx(2 * single)
    assert t.files == {"a.txt", "b.txt"}


def test_updated_usage_for_same_message_replaces_not_adds() -> None:
    stream, _ = make_stream()
    for out in (1, 40):
        usage = {"input_tokens": 5, "output_tokens": out}
        stream.feed(line({"type": "assistant", "message": {"id": "m", "content": [], "usage": usage}}))
    assert (stream.tally.input_tokens, stream.tally.output_tokens) == (5, 40)


# -- build_argv ----------------------------------------------------------------------------------


def cfg_with(**claude: Any) -> WorkspaceConfig:
    return parse_config(
        {
            "workspace": {"repo": "/tmp/r"},
            "agents": {"claude-code": claude},
            "budget": {"max_turns": 17, "max_cost_usd": 2.5},
        }
    )


def pairs(argv: list[str]) -> set[tuple[str, str]]:
    return set(itertools.pairwise(argv))


def test_build_argv_defaults() -> None:
    argv = build_argv("/usr/bin/claude", cfg_with(), "write tests")
    assert argv[0] == "/usr/bin/claude"
    assert "-p" in argv
    assert "--verbose" in argv
    p = pairs(argv)
    assert ("--output-format", "stream-json") in p
    assert ("--permission-mode", "acceptEdits") in p
    assert ("--max-turns", "17") in p
    assert ("--max-budget-usd", "2.5") in p
    assert argv[-2:] == ["--", "write tests"]
    for flag in ("--model", "--allowedTools", "--disallowedTools", "--dangerously-skip-permissions"):
        assert flag not in argv


def test_build_argv_with_model_and_tools() -> None:
    cfg = cfg_with(
        model="claude-sonnet-4-5",
        permission_mode="plan",
        allowed_tools=["Edit", "Bash(git *)"],
        disallowed_tools=["WebFetch", "WebSearch"],
    )
    argv = build_argv("claude", cfg, "go")
    p = pairs(argv)
    assert ("--model", "claude-sonnet-4-5") in p
    assert ("--permission-mode", "plan") in p
    assert ("--allowedTools", "Edit,Bash(git *)") in p
    assert ("--disallowedTools", "WebFetch,WebSearch") in p
    assert argv[-2:] == ["--", "go"]
    assert argv.index("--") == len(argv) - 2


@pytest.mark.parametrize("prompt", ["-rf --help", "--model evil", "--", "-p"])
def test_prompt_starting_with_dash_stays_a_prompt(prompt: str) -> None:
    argv = build_argv("claude", cfg_with(), prompt)
    assert argv[-1] == prompt
    assert argv[-2] == "--"
    # Everything before the separator is ours; the prompt is the only thing after it.
    assert argv.index("--") == len(argv) - 2
    assert ("--model", "evil") not in pairs(argv[:-1])


def test_multiline_prompt_is_one_argument() -> None:
    prompt = "Do this.\n\nAcceptance criteria:\n- tests pass"
    argv = build_argv("claude", cfg_with(), prompt)
    assert argv[-1] == prompt
