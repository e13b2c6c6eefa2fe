"""The heuristic decider: candidate order, op_hash, dedupe against task history, and the brief."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from orchestration.config import WorkspaceConfig, parse_config
from orchestration.decide import Candidate, candidates, choose, op_hash
from orchestration.decide.heuristic import blocked_hashes
from orchestration.models import Insights, TaskRecord

pytestmark = pytest.mark.timeout(30)

NOW = 1_790_000_000.0
DAY = 86400.0
GOALS = ["Raise test coverage of the billing module", "Document the public API of the client"]


def make_cfg(**over: Any) -> WorkspaceConfig:
    data: dict[str, Any] = {
        "workspace": {"repo": "/srv/repos/acme-api"},
        "goals": list(GOALS),
        "focus": {"include": ["src/**", "tests/**"], "exclude": ["src/generated/**"]},
        "permissions": {"deny_write": [".github/**", "secrets/**"]},
        "decision": {"avoid_repeat_days": 7},
        "budget": {"cycle_s": 1800},
    }
    data.update(over)
    return parse_config(data)


def make_insights() -> Insights:
    return Insights(
        failures={"Bash: pytest -q": 5, "Bash: npm run build": 2, "Read": 1},
        files={"src/billing.py": 12, "src/generated/api_pb2.py": 30, "docs/index.md": 25, "tests/test_x.py": 3},
        goals=["add retries to the HTTP client"],
    )


def entry(objective_or_hash: str, status: str, age_days: float, *, is_hash: bool = False) -> TaskRecord:
    h = objective_or_hash if is_hash else op_hash(objective_or_hash)
    return TaskRecord(op_hash=h, status=status, at=NOW - age_days * DAY, title="t", cycle_id="c")


def pick(cands: list[Candidate], cfg: WorkspaceConfig, history: list[TaskRecord]):  # type: ignore[no-untyped-def]
    return choose(cands, cfg, history, "claude-code", now=NOW)


# -- candidates ----------------------------------------------------------------------------------


def test_order_backlog_goals_insights_chores() -> None:
    cfg = make_cfg()
    cands = candidates(make_insights(), cfg, backlog="Fix the login redirect loop")
    objectives = [c.objective for c in cands]

    assert cands[0].backlog is True
    assert cands[0].objective == "Fix the login redirect loop"
    assert objectives[1:3] == GOALS  # config goals next, in the order written
    assert not any(c.backlog for c in cands[1:])

    insight = cands[3:-2]
    assert insight, "insights produce candidates"
    assert any("pytest -q" in c.objective for c in insight)
    assert any("npm run build" in c.objective for c in insight)
    assert any("src/billing.py" in c.objective for c in insight)
    assert any("add retries to the HTTP client" in c.objective for c in insight)

    chores = cands[-2:]
    assert [c.title for c in chores] == ["Raise test coverage", "Fix warnings"]
    assert max(c.score for c in chores) < min(c.score for c in cands[:-2])
    scores = [c.score for c in cands]
    assert scores == sorted(scores, reverse=True)


def test_without_backlog_goals_come_first() -> None:
    cands = candidates(make_insights(), make_cfg())
    assert [c.objective for c in cands[:2]] == GOALS
    assert not any(c.backlog for c in cands)


def test_goals_keep_their_written_order_and_rank_above_insights_even_when_many() -> None:
    goals = [f"goal number {i}: improve part {i}" for i in range(12)]
    cfg = make_cfg(goals=goals)
    ins = Insights(failures={"Bash: make test": 40}, files={"src/hot.py": 99})
    cands = candidates(ins, cfg)
    assert [c.objective for c in cands[: len(goals)]] == goals


def test_repeated_failures_only_from_two_and_more_ranked_by_count() -> None:
    cands = candidates(make_insights(), make_cfg(goals=[]))
    failing = [c for c in cands if "keeps failing" in c.objective]
    assert [c.objective for c in failing] == [
        "Find out why `Bash: pytest -q` keeps failing in this repository and fix the cause",
        "Find out why `Bash: npm run build` keeps failing in this repository and fix the cause",
    ]
    assert not any("`Read`" in c.objective for c in cands)  # failed once: not a pattern
    assert failing[0].score > failing[1].score


def test_hot_files_are_filtered_by_focus() -> None:
    cands = candidates(make_insights(), make_cfg())
    hot = [f for c in cands for f in c.files]
    assert "src/billing.py" in hot
    assert "tests/test_x.py" in hot
    assert "src/generated/api_pb2.py" not in hot  # excluded
    assert "docs/index.md" not in hot  # not included
    assert hot.index("src/billing.py") < hot.index("tests/test_x.py")  # more edits first


def test_hot_files_without_include_take_everything_not_excluded() -> None:
    cfg = make_cfg(focus={"include": [], "exclude": ["src/generated/**"]})
    hot = [f for c in candidates(make_insights(), cfg) for f in c.files]
    assert "src/billing.py" in hot and "tests/test_x.py" in hot
    assert "src/generated/api_pb2.py" not in hot
    assert "docs/index.md" not in hot  # docs get no "tests for" task


def test_no_insights_still_gives_goals_and_chores() -> None:
    cands = candidates(None, make_cfg())
    assert [c.objective for c in cands[:2]] == GOALS
    assert len(cands) == 4
    cands = candidates(Insights(), make_cfg(goals=[]))
    assert [c.title for c in cands] == ["Raise test coverage", "Fix warnings"]


# -- op_hash ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        "raise test coverage of the billing module",
        "RAISE TEST COVERAGE OF THE BILLING MODULE",
        "Raise test-coverage of the billing module!",
        "  Raise test coverage, of the billing module.  ",
        "Raise\ttest coverage of the\nbilling module",
    ],
)
def test_op_hash_is_stable_under_case_punctuation_and_whitespace(variant: str) -> None:
    assert op_hash(variant) == op_hash("Raise test coverage of the billing module")


def test_op_hash_differs_for_different_tasks() -> None:
    assert op_hash("Raise test coverage of billing") != op_hash("Raise test coverage of payments")
    h = op_hash("anything")
    assert re.fullmatch(r"[0-9a-f]{16}", h)
    assert Candidate("Anything!", "t", 1, "r").op_hash == h


# -- dedupe ----------------------------------------------------------------------------------------


def test_first_choice_without_history() -> None:
    decision, runners_up = pick(candidates(make_insights(), make_cfg()), make_cfg(), [])
    assert decision is not None
    assert decision.op_hash == op_hash(GOALS[0])
    assert decision.title == GOALS[0]
    assert decision.agent == "claude-code"
    assert decision.source == "heuristic"
    assert 0 <= decision.confidence <= 1
    assert 1 <= len(runners_up) <= 3
    assert runners_up[0].objective == GOALS[1]


def test_recent_success_is_passed_over() -> None:
    cfg = make_cfg()
    decision, _ = pick(candidates(make_insights(), cfg), cfg, [entry(GOALS[0], "succeeded", 1)])
    assert decision is not None
    assert decision.op_hash == op_hash(GOALS[1])


def test_success_recorded_with_different_spelling_still_blocks() -> None:
    cfg = make_cfg()
    decision, _ = pick(candidates(None, cfg), cfg, [entry(GOALS[0].upper() + "!!", "succeeded", 2)])
    assert decision is not None and decision.op_hash == op_hash(GOALS[1])


def test_one_failure_is_retried_two_are_passed_over() -> None:
    cfg = make_cfg()
    cands = candidates(make_insights(), cfg)
    decision, _ = pick(cands, cfg, [entry(GOALS[0], "failed", 1)])
    assert decision is not None and decision.op_hash == op_hash(GOALS[0])

    decision, _ = pick(cands, cfg, [entry(GOALS[0], "failed", 1), entry(GOALS[0], "timed_out", 3)])
    assert decision is not None and decision.op_hash == op_hash(GOALS[1])


def test_history_older_than_window_is_ignored() -> None:
    cfg = make_cfg()
    cands = candidates(make_insights(), cfg)
    old = [entry(GOALS[0], "succeeded", 8), entry(GOALS[0], "failed", 9), entry(GOALS[0], "failed", 10)]
    decision, _ = pick(cands, cfg, old)
    assert decision is not None and decision.op_hash == op_hash(GOALS[0])
    # Just inside the window it counts.
    decision, _ = pick(cands, cfg, [entry(GOALS[0], "succeeded", 6.9)])
    assert decision is not None and decision.op_hash == op_hash(GOALS[1])


def test_window_follows_avoid_repeat_days() -> None:
    cfg = make_cfg(decision={"avoid_repeat_days": 30})
    decision, _ = pick(candidates(None, cfg), cfg, [entry(GOALS[0], "succeeded", 20)])
    assert decision is not None and decision.op_hash == op_hash(GOALS[1])


def test_blocked_hashes_directly() -> None:
    history = [
        entry("a", "succeeded", 1),
        entry("b", "failed", 1),
        entry("c", "failed", 1),
        entry("c", "cancelled", 2),
        entry("d", "succeeded", 10),
    ]
    assert blocked_hashes(history, 7, now=NOW) == {op_hash("a"), op_hash("c")}


def test_everything_blocked_returns_none() -> None:
    cfg = make_cfg()
    cands = candidates(make_insights(), cfg, backlog="a queued task")
    history = [entry(c.op_hash, "succeeded", 0.5, is_hash=True) for c in cands]
    assert pick(cands, cfg, history) == (None, [])
    assert pick([], cfg, []) == (None, [])


# -- the brief -------------------------------------------------------------------------------------


def test_decision_task_has_criteria_deny_list_and_estimate_within_budget() -> None:
    cfg = make_cfg()
    decision, _ = pick(candidates(make_insights(), cfg), cfg, [])
    assert decision is not None
    task = decision.task
    assert task.startswith(GOALS[0])
    assert "Acceptance criteria:" in task
    criteria = task.split("Acceptance criteria:", 1)[1]
    assert re.search(r"^- ", criteria, re.M)

    deny_line = next(ln for ln in task.splitlines() if ln.startswith("Do not modify:"))
    for path in (".github/**", "secrets/**", "src/generated/**"):
        assert path in deny_line
    assert "src/**" in next(ln for ln in task.splitlines() if ln.startswith("Work inside:"))

    assert 0 < decision.estimated_s <= cfg.budget.cycle_s
    minutes = int(re.search(r"about (\d+) minutes", task).group(1))  # type: ignore[union-attr]
    assert 0 < minutes * 60 <= cfg.budget.cycle_s


@pytest.mark.parametrize("cycle_s", [60, 600, 7200])
def test_estimate_scales_with_budget(cycle_s: int) -> None:
    cfg = make_cfg(budget={"cycle_s": cycle_s})
    decision, _ = pick(candidates(None, cfg), cfg, [])
    assert decision is not None
    assert 0 < decision.estimated_s <= cycle_s
    m = re.search(r"about (\d+) (seconds|minutes)", decision.task)
    assert m is not None
    told_s = int(m.group(1)) * (60 if m.group(2) == "minutes" else 1)
    assert 0 < told_s <= cycle_s


def test_file_candidate_brief_names_its_file() -> None:
    cfg = make_cfg(goals=[])
    cands = [c for c in candidates(make_insights(), cfg) if c.files]
    decision, _ = pick(cands, cfg, [])
    assert decision is not None
    assert "Files in focus: `src/billing.py`." in decision.task


def test_no_deny_line_when_nothing_is_denied() -> None:
    cfg = make_cfg(focus={}, permissions={"deny_write": []})
    decision, _ = pick(candidates(None, cfg), cfg, [])
    assert decision is not None
    assert "Do not modify" not in decision.task
    assert "Acceptance criteria:" in decision.task


# -- many cycles in a row ---------------------------------------------------------------------------


def test_ten_consecutive_cycles_never_repeat_a_task() -> None:
    cfg = make_cfg()
    insights = make_insights()
    history: list[TaskRecord] = []
    seen: list[str] = []
    stopped = False
    for i in range(10):
        now = NOW + i * 3600
        decision, _ = choose(candidates(insights, cfg), cfg, history, "claude-code", now=now)
        if decision is None:
            stopped = True
            break
        assert decision.op_hash not in seen, f"cycle {i} repeated {decision.title!r}"
        seen.append(decision.op_hash)
        history.append(TaskRecord(op_hash=decision.op_hash, status="succeeded", at=now + 60, title=decision.title))
    assert len(set(seen)) == len(seen)
    assert len(seen) == 10 or stopped
    assert seen[:2] == [op_hash(g) for g in GOALS]
    if stopped:
        # Once everything is done it stays done (until the window passes).
        soon = NOW + 11 * 3600
        assert choose(candidates(insights, cfg), cfg, history, "claude-code", now=soon) == (None, [])
        later = NOW + 30 * DAY
        decision, _ = choose(candidates(insights, cfg), cfg, history, "claude-code", now=later)
        assert decision is not None and decision.op_hash == op_hash(GOALS[0])


def test_wall_clock_default_now_is_used() -> None:
    cfg = make_cfg()
    history = [TaskRecord(op_hash=op_hash(GOALS[0]), status="succeeded", at=time.time() - 60)]
    decision, _ = choose(candidates(None, cfg), cfg, history, "claude-code")
    assert decision is not None and decision.op_hash == op_hash(GOALS[1])
