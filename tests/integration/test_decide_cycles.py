"""Decisions across whole cycles (run in-process, `run --local` style): never the same task twice, the
backlog first and once, and `no_task` when the candidates run out."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from orchestration import cycle
from orchestration.config import parse_config
from orchestration.hub import LocalHub
from orchestration.models import StepStatus
from orchestration.services import Services
from orchestration.state import LocalState
from tests.helpers import ROOT, make_repo
from tests.unit.test_sessions import Claude, tool_use, usage

FAKE_CLAUDE = ROOT / "tests" / "fixtures" / "fake_claude.py"
pytestmark = pytest.mark.integration


def history_dir(tmp: Path, repo: Path) -> Path:
    """A fixed session history: one repeated failure, two hot files, one unfinished request."""
    c = Claude(str(repo))
    lines = [c.prompt("speed up the importer", 1)]
    for i in range(3):
        lines += [
            c.assistant(f"m{i}", f"r{i}", 2 + i, [tool_use(f"t{i}", "Bash", command="pytest -q")], usage(1, 1)),
            c.tool_result(f"t{i}", 2 + i, is_error=True),
        ]
    for i, f in enumerate(["app.py", "app.py", "README.md"]):
        lines.append(
            c.assistant(f"e{i}", f"q{i}", 9, [tool_use(f"x{i}", "Edit", file_path=str(repo / f))], usage(1, 1))
        )
    path = tmp / "claude" / "projects" / "p" / f"{c.session}.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    return tmp / "claude"


@pytest.fixture
def local(tmp_path: Path):  # type: ignore[no-untyped-def]
    repo, _bare = make_repo(tmp_path)
    cfg = parse_config(
        {
            "id": "demo",
            "workspace": {"repo": str(repo)},
            "goals": ["Add type hints to app.py", "Document the add function"],
            "sessions": {
                "claude_dir": str(history_dir(tmp_path, repo)),
                "codex_dir": str(tmp_path / "none"),
                "since_days": 3650,
            },
            "decision": {"backend": "heuristic"},
            "agents": {"allow": ["claude-code"], "claude-code": {"command": str(FAKE_CLAUDE)}},
            "pr": {"enabled": False},
        }
    )
    svc = Services(state=LocalState(tmp_path / "st"), hub=LocalHub(tmp_path / "ev"), state_dir=tmp_path / "sd")
    return cfg, svc


@pytest.mark.timeout(240)
def test_ten_cycles_ten_different_tasks_then_no_task(local) -> None:  # type: ignore[no-untyped-def]
    cfg, svc = local
    reports = [cycle.run_local(cycle.enqueue(svc, cfg), svc) for _ in range(10)]
    done = [r for r in reports if r.status.value == "succeeded"]
    hashes = [r.decision.op_hash for r in done if r.decision]
    assert len(hashes) == len(set(hashes)), [r.decision.title for r in done if r.decision]
    # The candidates of this history: 2 goals, the failing `pytest` (one piece of work with the request its
    # session served, which is also the most recent one: no separate follow-up), 1 hot code file (README.md
    # gets no tests task), 2 chores = 6.
    assert len(done) == 6
    titles = [r.decision.title for r in done if r.decision]
    assert "Make `pytest` pass" in titles
    assert all(r.status.value == "skipped" and r.reason == "no_task" for r in reports[len(done) :])
    assert [r.status.value for r in reports] == ["succeeded"] * len(done) + ["skipped"] * (10 - len(done))


@pytest.mark.timeout(120)
def test_backlog_task_first_and_only_once(local) -> None:  # type: ignore[no-untyped-def]
    cfg, svc = local
    svc.state.push_backlog("demo", "Rename add() to add_numbers() everywhere")
    first = cycle.run_local(cycle.enqueue(svc, cfg), svc)
    second = cycle.run_local(cycle.enqueue(svc, cfg), svc)
    assert first.decision and first.decision.title == "Rename add() to add_numbers() everywhere"
    assert second.decision and second.decision.title == "Add type hints to app.py"
    assert svc.state.list_backlog("demo") == []
    # A dry run shows the backlog task without taking it.
    svc.state.push_backlog("demo", "Bump the version")
    dry = cycle.run_local(cycle.enqueue(svc, cfg, dry_run=True), svc)
    assert dry.decision and dry.decision.title == "Bump the version"
    assert svc.state.list_backlog("demo") == ["Bump the version"]


@pytest.mark.timeout(60)
def test_daily_budget_exhausted_skips_and_spend_is_recorded(local) -> None:  # type: ignore[no-untyped-def]
    cfg, svc = local
    first = cycle.run_local(cycle.enqueue(svc, cfg), svc)
    assert first.status.value == "succeeded" and first.agent and first.agent.cost_usd == pytest.approx(0.0123)
    from orchestration.lifecycle import today as _today

    assert svc.state.get_spend("demo", _today()) == pytest.approx(0.0123)
    svc.state.add_spend("demo", _today(), cfg.budget.daily_cost_usd)
    second = cycle.run_local(cycle.enqueue(svc, cfg), svc)
    assert second.status.value == "skipped" and second.reason == "daily_budget_exhausted"
    assert svc.state.acquire_lock("demo", 10)  # the skipped cycle released the lock it took


@pytest.mark.timeout(60)
def test_redelivered_execute_never_starts_a_second_agent(local) -> None:  # type: ignore[no-untyped-def]
    cfg, svc = local
    # The default pipeline: analyze (0), decide (1), execute (2), pr.create (3).
    ctx = cycle.start(cycle.enqueue(svc, cfg), svc)
    ctx = cycle.run_step(cycle.run_step(ctx, svc, 0), svc, 1)
    first = cycle.run_step(ctx.model_copy(deep=True), svc, 2)
    assert first.agent and first.agent.status == "succeeded"
    with pytest.raises(cycle.AlreadyHandled, match="step 2 already ran"):
        cycle.run_step(ctx.model_copy(deep=True), svc, 2)
    # While the first delivery still runs (the record does not say the step ended), the agent's own claim holds.
    record = svc.state.get_cycle(ctx.cycle_id)
    record.ctx.steps[2].status = StepStatus.PENDING
    svc.state.save_cycle(record)
    with pytest.raises(cycle.AlreadyHandled, match="already started"):
        cycle.run_step(ctx.model_copy(deep=True), svc, 2)
    # Once the cycle has ended, any late delivery of any stage is dropped.
    report = cycle.finish(first, svc)
    assert report.status.value == "succeeded"
    first_step, last_step = (lambda c, s: cycle.run_step(c, s, 0)), (lambda c, s: cycle.run_step(c, s, 3))
    for stage in (cycle.start, first_step, last_step, cycle.finish):
        with pytest.raises(cycle.AlreadyHandled, match=r"already (ended|ran)"):
            stage(first.model_copy(deep=True), svc)
