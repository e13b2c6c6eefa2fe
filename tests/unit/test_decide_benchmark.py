"""The decision benchmark (`benchmarks/decide`): its histories are valid transcripts and rollouts that the
analyzer reads with nothing skipped but what was broken on purpose, its labels name real files, the runner
decides every history, and the hit rule judges titles and tasks as documented."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest

from benchmarks.decide.generate import NOW, generate, select
from benchmarks.decide.hits import files_in, first_paragraph, is_target, judge, names
from benchmarks.decide.llm_check import answer, evidence_ids
from benchmarks.decide.records import History, Label
from benchmarks.decide.run import analyze, evaluate, hit_rate, table, workspace_config
from benchmarks.decide.scenarios import SCENARIOS

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> list[History]:
    return generate(tmp_path_factory.mktemp("decide"), "fast")


# -- the histories ---------------------------------------------------------------------------------


def test_there_are_enough_histories_and_a_fast_subset_of_both_providers(fast: list[History]) -> None:
    assert len(SCENARIOS) >= 24
    assert len({s.name for s in SCENARIOS}) == len(SCENARIOS)
    assert len(fast) == len(select("fast")) == 8
    formats = {s.format for h in fast for s in h.sessions}
    assert {"2.1.328", "0.169.0", "0.58.0"} <= formats
    assert any(len(h.sessions) > 2 for h in fast)
    assert any(not s.in_workspace for h in fast for s in h.sessions)


def test_every_line_is_json_but_the_ones_broken_on_purpose(fast: list[History]) -> None:
    for h in fast:
        broken: Counter[str] = Counter()
        files = [*h.claude_dir.rglob("*.jsonl"), *h.codex_dir.rglob("*.jsonl")]
        assert len(files) == len(h.sessions)
        for path in files:
            data = path.read_bytes()
            lines = data.split(b"\n")
            if lines[-1]:
                broken["incomplete_line"] += 1
            for raw in lines[:-1]:
                try:
                    assert isinstance(orjson.loads(raw), dict)
                except orjson.JSONDecodeError:
                    broken["malformed_line"] += 1
        planted = {k: n for k, n in h.planted.items() if k in ("incomplete_line", "malformed_line")}
        assert dict(broken) == planted, h.name


def test_the_analyzer_skips_only_what_was_planted(fast: list[History]) -> None:
    """Every history is read with nothing skipped except the lines and files planted on purpose (broken lines,
    sessions in other directories, a session older than the window) and, at most, the newest CLIs' bookkeeping
    lines (`unknown_type`, while a reader does not know them)."""
    for h in fast:
        insights = analyze(h, workspace_config(h))
        skipped = dict(insights.skipped)
        assert skipped.pop("unknown_type", 0) <= h.newer_lines, h.name
        assert skipped == h.planted, h.name
        cutoff = NOW - timedelta(days=h.since_days)
        window = [s for s in h.sessions if s.in_workspace and datetime.fromisoformat(s.ended) >= cutoff]
        assert insights.sessions == len(window), h.name
        assert insights.turns == sum(s.prompts for s in window), h.name
        assert sum(insights.failures.values()) == sum(s.failures for s in window), h.name
    planted: Counter[str] = Counter()
    for h in fast:
        planted.update(h.planted)
    assert set(planted) == {"incomplete_line", "malformed_line", "other_workspace", "too_old"}


def test_labels_name_the_repository(fast: list[History]) -> None:
    for h in fast:
        assert (h.repo / h.label.target).exists(), h.name
        assert h.label.accepted[0] == h.label.target
        assert len(set(h.label.accepted)) == len(h.label.accepted)
        assert h.label.why


def test_generation_is_deterministic(tmp_path: Path) -> None:
    one = generate(tmp_path / "a", only=["dates_abandoned"], git=False)[0]
    two = generate(tmp_path / "b", only=["dates_abandoned"], git=False)[0]
    for s1, s2 in zip(one.sessions, two.sessions, strict=True):
        a = (one.root / s1.path).read_text().replace(str(one.root), "ROOT")
        b = (two.root / s2.path).read_text().replace(str(two.root), "ROOT")
        assert a == b and s1.started == s2.started


def test_the_runner_decides_every_history(fast: list[History]) -> None:
    results = [evaluate(h) for h in fast]
    assert all(r.title and r.source == "heuristic" for r in results)
    assert 0.0 <= hit_rate(results) <= 1.0
    printed = table(results)
    assert all(h.name in printed and h.label.target in printed for h in fast)
    assert hit_rate(results) >= 0.9, printed  # the decision names the work (the benchmark's goal)


# -- the hit rule ----------------------------------------------------------------------------------

DATES = Label(
    target="tests/test_dates.py",
    accepted=("tests/test_dates.py", "test_dates", "test_parse_iso_week", "src/parser/dates.py"),
    why="-",
)
REPO = ("Makefile", "src/parser/dates.py", "tests/test_dates.py", "src/api/routes.py")


def test_a_title_naming_the_target_with_a_focused_task_is_a_hit() -> None:
    v = judge(
        "Fix test_parse_iso_week in tests/test_dates.py",
        "The test `tests/test_dates.py::test_parse_iso_week` fails; the bug is in src/parser/dates.py:11.\n\nWhy: …",
        DATES,
        REPO,
    )
    assert v.hit and v.named == "tests/test_dates.py" and v.others == ()


def test_five_other_files_in_the_first_paragraph_is_a_miss() -> None:
    task = "Fix tests/test_dates.py. Look at src/a.py, src/b.py, src/c.py, web/d.ts and Makefile.\n\nMore."
    v = judge("Fix tests/test_dates.py", task, DATES, REPO)
    assert not v.hit and v.others == ("src/a.py", "src/b.py", "src/c.py", "web/d.ts", "Makefile")
    assert "5 other files" in v.why


def test_two_other_files_are_allowed_three_are_not() -> None:
    two = "Fix tests/test_dates.py; see src/api/routes.py and conftest.py."
    three = two + " Also setup.cfg."
    assert judge("Fix test_dates", two, DATES, REPO).hit
    assert not judge("Fix test_dates", three, DATES, REPO).hit


def test_only_the_first_paragraph_counts() -> None:
    task = "Fix tests/test_dates.py\n   \nFiles seen: a.py, b.py, c.py, d.py"
    assert first_paragraph(task) == "Fix tests/test_dates.py"
    assert judge("Fix tests/test_dates.py", task, DATES, REPO).hit


def test_a_title_not_naming_the_target_is_a_miss_whatever_the_task_says() -> None:
    v = judge("Fix repeated failures of python3 -m pytest", "Fix tests/test_dates.py", DATES, REPO)
    assert not v.hit and v.why == "title does not name tests/test_dates.py"


def test_spellings_match_whole_tokens_case_insensitively() -> None:
    assert names("FIX TESTS/TEST_DATES.PY", "tests/test_dates.py")
    assert names("Fix `tests/test_dates.py::test_x`", "test_dates")
    assert not names("Fix tests/test_dates.py", "dates.py")  # inside a longer name
    assert not names("Fix the updates", "dates")
    assert judge("Make parse_iso_week pass test_parse_iso_week", "x", DATES, REPO).hit


def test_what_counts_as_a_file() -> None:
    text = (
        "See `tests/test_x.py::test_y`, src/a.py:12:5: and web/src/f.ts:3, ./b.go, the Makefile, README.md; "
        "not e.g. Node.js, 1.79, v5, pgx.ErrNoRows, github.com/jackc/pgx/v5 or https://x.org/a.html"
    )
    assert files_in(text, REPO) == ["tests/test_x.py", "src/a.py", "web/src/f.ts", "b.go", "Makefile", "README.md"]


def test_absolute_paths_inside_the_repository_are_relative() -> None:
    task = "Fix /work/r/tests/test_dates.py, see /work/r/src/api/routes.py"
    assert files_in(task, REPO, "/work/r") == ["tests/test_dates.py", "src/api/routes.py"]
    assert judge("Fix test_dates", task, DATES, REPO, "/work/r").others == ("src/api/routes.py",)


def test_files_of_the_target_are_not_others() -> None:
    assert is_target("test_dates.py", DATES.accepted)  # the end of an accepted spelling
    assert is_target("/elsewhere/tests/test_dates.py", DATES.accepted)  # ends with one
    assert is_target("pkg/ratelimit/clock.go", ("pkg/ratelimit",))  # inside the target package
    assert not is_target("src/parser/numbers.py", DATES.accepted)
    assert not is_target("dates.py", ("src/parser/test_dates.py",))


# -- the scripted model of --llm (the servers themselves: tests/integration/test_decide_benchmark_llm.py) ------


def _request(context: dict[str, object]) -> dict[str, object]:
    return {"messages": [{"role": "system", "content": "…"}, {"role": "user", "content": json.dumps(context)}]}


def test_the_scripted_model_takes_candidate_0_and_cites_its_evidence() -> None:
    candidate = {"index": 0, "title": "Fix tests/test_dates.py", "task": "Make the dates test pass.", "why": "w"}
    candidate["evidence"] = [{"id": "E1", "kind": "failure"}, {"id": "E2", "kind": "request"}]
    context = {"candidates": [candidate, {"title": "other"}], "agents": ["codex"], "budget_minutes": 24}
    own = json.loads(answer(_request(context), None))
    assert own["candidate"] == 0 and own["title"] == "Fix tests/test_dates.py" and own["agent"] == "codex"
    assert own["evidence"] == ["E1", "E2"] and own["estimated_minutes"] == 24
    assert json.loads(answer(_request(context), ["E999"]))["evidence"] == ["E999"]
    assert evidence_ids({"title": "no evidence"}) is None
    assert answer({"messages": []}, None) == "{}"
