"""Decisions that name the work: a failing command's signals (the session, the request, the files, the error
output, the agent's last words) merge into one candidate, grouped by what failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from orchestration.config import WorkspaceConfig
from orchestration.decide.heuristic import candidates
from orchestration.decide.orchestrator import make_decision
from orchestration.sessions import analyze_sessions
from orchestration.sessions._common import command_target
from tests.unit.test_sessions import Claude, cfg, tool_use, usage

PYTEST_OUTPUT = (
    "Exit code 1\n"
    "============================= test session starts ==============================\n"
    "collected 4 items\n\n"
    "tests/test_dates.py ..F.                                                  [100%]\n\n"
    "=================================== FAILURES ===================================\n"
    "________________________________ test_parse_iso ________________________________\n\n"
    "    def test_parse_iso():\n"
    ">       assert parse('2026-11-30T10:00:00+01:00') == datetime(2026, 11, 30, 9, tzinfo=UTC)\n"
    "E       AssertionError: assert None == datetime.datetime(2026, 11, 30, 9, 0, tzinfo=UTC)\n\n"
    "tests/test_dates.py:14: AssertionError\n"
    "=========================== short test summary info ============================\n"
    "FAILED tests/test_dates.py::test_parse_iso - AssertionError: assert None == datetime.datetime(...)\n"
    "========================= 1 failed, 3 passed in 0.12s ==========================\n"
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for rel in ("src/parser/dates.py", "src/parser/__init__.py", "tests/test_dates.py", "tests/test_money.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("# code\n")
    return root


def write(path: Path, lines: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))


def result(c: Claude, tool_id: str, minute: int, content: str, is_error: bool) -> dict[str, Any]:
    block = {"tool_use_id": tool_id, "type": "tool_result", "content": content, "is_error": is_error}
    return {**c._base("user", minute), "message": {"role": "user", "content": [block]}}


def call(c: Claude, i: int, minute: int, name: str, **inp: Any) -> dict[str, Any]:
    return c.assistant(f"m{i}", f"r{i}", minute, [tool_use(f"t{i}", name, **inp)], usage(1, 1))


def bash(c: Claude, i: int, minute: int, command: str, output: str, fails: bool) -> list[dict[str, Any]]:
    return [call(c, i, minute, "Bash", command=command), result(c, f"t{i}", minute, output, fails)]


def config(repo: Path, **kw: Any) -> WorkspaceConfig:
    return WorkspaceConfig.model_validate({"workspace": {"repo": str(repo)}, **kw})


def abandoned_failing_test(c: Claude, repo: Path) -> list[dict[str, Any]]:
    """A person asks to fix a failing test in a named module; the agent reads and edits it, runs the test
    three times, fails every time and stops."""
    command = "python3 -m pytest tests/test_dates.py -q"
    return [
        c.prompt("fix the failing test in the dates parser", 1),
        call(c, 1, 2, "Read", file_path=str(repo / "src/parser/dates.py")),
        result(c, "t1", 2, "def parse(text): ...", False),
        call(c, 2, 2, "Read", file_path=str(repo / "tests/test_dates.py")),
        result(c, "t2", 2, "def test_parse_iso(): ...", False),
        *bash(c, 3, 3, command, PYTEST_OUTPUT, True),
        call(c, 4, 4, "Edit", file_path=str(repo / "src/parser/dates.py"), old_string="a", new_string="b"),
        result(c, "t4", 4, "ok", False),
        *bash(c, 5, 5, command, PYTEST_OUTPUT, True),
        call(c, 6, 6, "Edit", file_path=str(repo / "src/parser/dates.py"), old_string="b", new_string="c"),
        result(c, "t6", 6, "ok", False),
        *bash(c, 7, 7, command, PYTEST_OUTPUT, True),
    ]


def test_the_abandoned_failing_test_becomes_one_task_naming_the_test_file_and_the_module(
    tmp_path: Path, repo: Path
) -> None:
    c = Claude(str(repo))
    write(tmp_path / "claude/projects/p" / f"{c.session}.jsonl", abandoned_failing_test(c, repo))
    ins = analyze_sessions(repo, cfg(tmp_path), cache_dir=None)
    [work] = ins.work
    assert work.kind == "failing" and work.failures == 3 and work.abandoned
    assert work.target == "python3 -m pytest tests/test_dates.py"
    assert work.subjects == ["tests/test_dates.py", "tests/test_dates.py::test_parse_iso"]
    assert work.request == "fix the failing test in the dates parser"
    assert work.edited == ["src/parser/dates.py"] and work.read == ["tests/test_dates.py"]

    outcome = make_decision(insights=ins, cfg=config(repo), history=[], backlog=[])
    d = outcome.decision
    assert d is not None
    assert d.title == "Fix tests/test_dates.py::test_parse_iso (pytest)"
    first, _, rest = d.task.partition("\n\n")
    assert "`python3 -m pytest tests/test_dates.py -q`" in first  # the full command, with its arguments
    assert "src/parser/dates.py" in first  # the module the work was in
    assert "fix the failing test in the dates parser" in rest  # the person's own words
    assert "E       AssertionError: assert None == datetime" in rest  # the last error output
    assert "ran it 3 times, 3 failed" in rest  # what was already tried
    kinds = [e.kind for e in d.evidence]
    assert kinds == ["failure", "error", "request", "files"]
    assert all(e.sessions[0].session_id == c.session for e in d.evidence)
    # One piece of work, not four competing candidates: the request is not a runner-up of its own.
    assert not any("dates parser" in r.title for r in outcome.runners_up)


def test_two_failing_test_files_are_two_candidates(tmp_path: Path, repo: Path) -> None:
    c = Claude(str(repo))
    money = PYTEST_OUTPUT.replace("test_dates", "test_money").replace("test_parse_iso", "test_round")
    write(
        tmp_path / "claude/projects/p" / f"{c.session}.jsonl",
        [
            c.prompt("run the tests", 1),
            *bash(c, 1, 2, "pytest tests/test_dates.py", PYTEST_OUTPUT, True),
            *bash(c, 2, 3, "pytest tests/test_money.py", money, True),
            *bash(c, 3, 4, "pytest tests/test_dates.py", PYTEST_OUTPUT, True),
            *bash(c, 4, 5, "pytest tests/test_money.py", money, True),
        ],
    )
    ins = analyze_sessions(repo, cfg(tmp_path), cache_dir=None)
    cands = [x for x in candidates(ins, config(repo)) if x.title.startswith("Fix tests/")]
    assert [x.title for x in cands] == [
        "Fix tests/test_money.py::test_round (pytest)",
        "Fix tests/test_dates.py::test_parse_iso (pytest)",
    ]
    assert len({x.op_hash for x in cands}) == 2


def test_a_test_that_passed_after_failing_is_not_work_left(tmp_path: Path, repo: Path) -> None:
    c = Claude(str(repo))
    write(
        tmp_path / "claude/projects/p" / f"{c.session}.jsonl",
        [
            c.prompt("fix the dates test", 1),
            *bash(c, 1, 2, "pytest tests/test_dates.py", PYTEST_OUTPUT, True),
            *bash(c, 2, 3, "pytest tests/test_dates.py", PYTEST_OUTPUT, True),
            *bash(c, 3, 4, "pytest tests/test_dates.py -q", "4 passed", False),
        ],
    )
    ins = analyze_sessions(repo, cfg(tmp_path), cache_dir=None)
    assert ins.work == []
    assert ins.failures == {"pytest": 2} and ins.fixed == ["pytest"]
    # Nothing takes the fixed failures up: the person's request is what is left.
    titles = [x.title for x in candidates(ins, config(repo))]
    assert not any("pytest" in t for t in titles) and titles[0] == "Follow up: fix the dates test"


def test_two_commands_failing_on_the_same_file_are_one_problem_named_from_the_root(tmp_path: Path, repo: Path) -> None:
    """`npm run build` and `npx tsc` in web/ each failed once on one type error: one piece of work, failing
    twice, named by the file (as the repository names it, not as the runner in web/ printed it)."""
    c = Claude(str(repo))
    tsc = "src/lib/format.ts(12,9): error TS2322: Type 'string | undefined' is not assignable to type 'string'.\n"
    write(
        tmp_path / "claude/projects/p" / f"{c.session}.jsonl",
        [
            c.prompt("the web build is broken", 1),
            *bash(c, 1, 2, "cd web && npm run build", "> tsc --noEmit && vite build\n\n" + tsc, True),
            *bash(c, 2, 3, "cd web && npx tsc --noEmit --pretty false", tsc, True),
            c.assistant("m9", "r9", 4, [{"type": "text", "text": "Should locale be required?"}], usage(1, 1)),
        ],
    )
    ins = analyze_sessions(repo, cfg(tmp_path), cache_dir=None)
    [w] = ins.work
    assert (w.failures, w.target, w.subjects) == (2, "npx tsc (in web)", ["web/src/lib/format.ts"])
    d = make_decision(insights=ins, cfg=config(repo), history=[], backlog=[]).decision
    assert d is not None and d.title == "Fix web/src/lib/format.ts (npx tsc)"


def test_a_file_the_output_blames_is_named_before_the_directory_the_command_was_given(
    tmp_path: Path, repo: Path
) -> None:
    c = Claude(str(repo))
    out = 'src/parser/numbers.py:41: error: Incompatible return value type (got "str", expected "int")\n'
    write(
        tmp_path / "claude/projects/p" / f"{c.session}.jsonl",
        [c.prompt("types", 1), *bash(c, 1, 2, "mypy src", out, True), *bash(c, 2, 3, "mypy src", out, True)],
    )
    d = make_decision(
        insights=analyze_sessions(repo, cfg(tmp_path), cache_dir=None), cfg=config(repo), history=[], backlog=[]
    ).decision
    assert d is not None and d.title == "Fix src/parser/numbers.py (mypy)"


def test_the_same_command_in_two_directories_is_two_problems(tmp_path: Path, repo: Path) -> None:
    c = Claude(str(repo))
    lines = [c.prompt("get the web tests green", 1)]
    for i in range(4):
        where = "web" if i % 2 else "api"
        lines += bash(c, i, 2 + i, f"cd {where} && npm test", f"FAIL src/{where}.test.ts\n", True)
    write(tmp_path / "claude/projects/p" / f"{c.session}.jsonl", lines)
    ins = analyze_sessions(repo, cfg(tmp_path), cache_dir=None)
    assert sorted(w.target or "" for w in ins.work) == ["npm test (in api)", "npm test (in web)"]


@pytest.mark.parametrize(
    ("script", "cwd", "target"),
    [
        ("python3 -m pytest tests/test_dates.py -q", ".", "python3 -m pytest tests/test_dates.py"),
        ("pytest -x tests/a.py::test_b 2>&1 | tail -20", None, "pytest tests/a.py::test_b"),
        ("cd web && npm test", ".", "npm test (in web)"),
        ("npm test", "web", "npm test (in web)"),
        ("cd ../elsewhere && make", ".", "make"),
        ("go test -run TestParse ./pkg/x/...", None, "go test -run TestParse ./pkg/x/..."),
        ("FOO=1 sudo cargo test parser::dates -- --nocapture", None, "cargo test parser::dates"),
        ("", None, "shell"),
        ("npm test", "/abs/outside", "npm test"),
        ("npx tsc --noEmit --pretty false", "web", "npx tsc (in web)"),
        ("pytest -n 4 --tb short tests/a.py", None, "pytest tests/a.py"),
    ],
)
def test_command_target_names_what_ran(script: str, cwd: str | None, target: str) -> None:
    assert command_target(script, cwd) == target


def test_the_pr_body_shows_the_evidence_fenced(tmp_path: Path, repo: Path) -> None:
    from orchestration.models import AgentResult, Status
    from orchestration.pr import render_body
    from tests.unit.test_output_safety import outside_fences

    c = Claude(str(repo))
    lines = abandoned_failing_test(c, repo)
    lines[0] = c.prompt("fix the failing test in the dates parser\n## Closes #1 ![x](http://e/x.png) @team", 1)
    write(tmp_path / "claude/projects/p" / f"{c.session}.jsonl", lines)
    d = make_decision(
        insights=analyze_sessions(repo, cfg(tmp_path), cache_dir=None), cfg=config(repo), history=[], backlog=[]
    ).decision
    assert d is not None
    body = render_body(
        cycle_id="c-1", decision=d, agent=AgentResult(), cycle_status=Status.SUCCEEDED, duration_s=1, files=[]
    )
    evidence = body.split("### Evidence", 1)[1].split("### Run", 1)[0]
    assert f"E1 failure (claude-code {c.session[:8]} " in evidence
    assert "`python3 -m pytest tests/test_dates.py -q` failed 3 of 3 runs, and the session ended on it" in evidence
    assert "E3 request" in evidence and "fix the failing test in the dates parser" in evidence
    assert "edited: src/parser/dates.py; read: tests/test_dates.py" in evidence
    # What people and agents wrote renders only inside fences: no heading, image, mention or closing keyword.
    outside = "\n".join(outside_fences(body))
    assert "Closes #1" not in outside and "![x]" not in outside and "@team" not in outside


def test_codex_sessions_give_the_same_evidence(tmp_path: Path, repo: Path) -> None:
    """Codex's newest shape: a shell function call, its output item and its end event (one run, counted
    once), an apply_patch edit, the agent's message; two sessions, the later one stopping on the failure."""
    from tests.unit.test_sessions import envelope, rollout

    go_output = (
        "--- FAIL: TestParseISO (0.00s)\n    dates_test.go:14: got nil\nFAIL\nFAIL\texample.com/m/pkg/dates\t0.003s\n"
    )

    def session(sid: str, minute: int, say: str | None) -> list[dict[str, Any]]:
        call = {"cmd": "go test ./pkg/dates/...", "workdir": str(repo)}
        lines = [
            envelope("session_meta", minute, id=sid, cwd=str(repo)),
            envelope("event_msg", minute, type="user_message", message="make the dates package tests pass"),
            envelope(
                "response_item",
                minute + 1,
                type="custom_tool_call",
                name="apply_patch",
                call_id=f"{sid}-p",
                input="*** Begin Patch\n*** Update File: pkg/dates/parse.go\n@@\n-a\n+b\n*** End Patch",
            ),
            envelope(
                "response_item",
                minute + 2,
                type="function_call",
                name="exec_command",
                call_id=f"{sid}-c",
                arguments=orjson.dumps(call).decode(),
            ),
            envelope(
                "response_item",
                minute + 2,
                type="function_call_output",
                call_id=f"{sid}-c",
                output=f"Chunk ID: 1\nWall time: 0.1 seconds\nProcess exited with code 1\nOutput:\n{go_output}",
            ),
            envelope(
                "event_msg",
                minute + 2,
                type="exec_command_end",
                call_id=f"{sid}-c",
                command=["/bin/bash", "-lc", "go test ./pkg/dates/..."],
                exit_code=1,
                aggregated_output=go_output,
            ),
        ]
        if say:
            lines.append(envelope("event_msg", minute + 3, type="agent_message", message=say))
        return lines

    write(rollout(tmp_path, "rollout-a.jsonl"), session("s1", 1, "The parser still returns nil; I stopped here."))
    write(rollout(tmp_path, "rollout-b.jsonl"), session("s2", 10, None))
    ins = analyze_sessions(repo, cfg(tmp_path, providers=["codex"]), cache_dir=None)
    [w] = ins.work
    assert (w.target, w.failures, w.runs, w.abandoned) == ("go test ./pkg/dates/...", 2, 2, True)
    assert w.subjects == ["pkg/dates/...", "TestParseISO", "example.com/m/pkg/dates"]
    assert [s.session_id for s in w.sessions] == ["s2", "s1"]
    assert w.edited == ["pkg/dates/parse.go"] and w.request == "make the dates package tests pass"
    assert w.error == go_output
    d = make_decision(insights=ins, cfg=config(repo), history=[], backlog=[]).decision
    assert d is not None and d.title == "Fix example.com/m/pkg/dates: TestParseISO (go test)"  # the package, not ./...


def test_a_python_script_is_the_runner_and_a_dotted_test_label_what_failed(tmp_path: Path, repo: Path) -> None:
    c = Claude(str(repo))
    out = "FAIL: test_total (shop.tests.OrderTotalTests.test_total)\n----\nAssertionError: 85 != 77\n"
    command = "python manage.py test shop.tests.OrderTotalTests"
    write(
        tmp_path / "claude/projects/p" / f"{c.session}.jsonl",
        [c.prompt("fix the order total", 1), *bash(c, 1, 2, command, out, True), *bash(c, 2, 3, command, out, True)],
    )
    ins = analyze_sessions(repo, cfg(tmp_path), cache_dir=None)
    [w] = ins.work
    assert w.subjects == ["shop.tests.OrderTotalTests", "shop.tests.OrderTotalTests.test_total"]  # not manage.py
    d = make_decision(insights=ins, cfg=config(repo), history=[], backlog=[]).decision
    assert d is not None and d.title == "Fix shop.tests.OrderTotalTests (manage.py test)"


def test_a_path_too_long_for_a_title_keeps_its_last_parts() -> None:
    from orchestration.decide.heuristic import _title_naming

    path = "services/billing/billing/adapters/payment_providers/stripe_webhook_signature.py"
    title = _title_naming("Finish: ", f"{path} accepts replayed webhooks: reject old timestamps")
    assert title.startswith("Finish: …/payment_providers/stripe_webhook_signature.py: ") and len(title) <= 72
    short = _title_naming("Finish: ", "make src/a.py faster")
    assert short == "Finish: make src/a.py faster"
