"""The stages of a cycle as plain functions, shared by the Celery tasks and `orchestrate run --local`.

Each stage takes the cycle context, does its part, records the context in the cycle record (so the error
path can finish what a crashed stage left), and returns it. A cycle that ended early (skipped, cancelled,
timed out) flows through the remaining stages untouched until `finish` writes its report.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestration import git
from orchestration.agents import worktree as wt
from orchestration.agents.process import RunAs, group_alive, kill_group, process_identity
from orchestration.agents.runner import resolve_command, run_agent
from orchestration.config import WorkspaceConfig, parse_config
from orchestration.decide.orchestrator import RUNNABLE_AGENTS, make_decision
from orchestration.git import GitError
from orchestration.hub import Hub
from orchestration.models import (
    AgentResult,
    CycleContext,
    CycleReport,
    Decision,
    PRResult,
    Reason,
    Status,
    iso,
    utcnow,
)
from orchestration.policy import HostPolicy, policy_problems
from orchestration.redact import redact_model
from orchestration.sessions import analyze_sessions
from orchestration.settings import Settings, get_settings
from orchestration.state import State

# Time kept back from the agent at the end of the budget for committing, pushing and the PR.
WRAP_UP_MIN_S = 2.0
WRAP_UP_MAX_S = 120.0
WRAP_UP_SHARE = 0.1
# How long past its budget a cycle may run: the agent's kill grace plus the wrap-up stages.
GRACE_S = 30


@dataclass
class Services:
    state: State
    hub: Hub
    state_dir: Path


class AlreadyHandled(Exception):
    """This delivery of a stage has nothing to do: the cycle already ended, or another delivery of the same
    stage owns it (a redelivered message under acks_late). The Celery layer drops it without a trace."""


def _now() -> float:
    return time.time()


def config_problems(cfg: WorkspaceConfig, settings: Settings) -> list[str]:
    """What makes a valid file unusable on this deployment; each line starts with its JSON path."""
    problems = []
    need = cfg.budget.cycle_s + GRACE_S + 300
    if settings.visibility_timeout_s < need:
        # SPEC §7/§13: with acks_late, a stage running past the visibility timeout is redelivered to a
        # second worker while the first still runs.
        problems.append(
            f"budget.cycle_s: {cfg.budget.cycle_s} s does not fit the broker's visibility_timeout of "
            f"{settings.visibility_timeout_s} s (a running stage would be redelivered to a second worker); "
            f"set ORCH_VISIBILITY_TIMEOUT_S to at least {need}"
        )
    if cfg.pipeline is not None:
        problems.append(
            "pipeline: custom pipeline manifests are not supported by this version yet; "
            "remove the field (or set it to null) to run the default pipeline"
        )
    return problems


def new_cycle_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"


def wrap_up_s(cfg: WorkspaceConfig) -> float:
    return min(WRAP_UP_MAX_S, max(WRAP_UP_MIN_S, cfg.budget.cycle_s * WRAP_UP_SHARE))


def emit(svc: Services, ctx: CycleContext, stage: str, kind: str, data: dict[str, Any] | None = None) -> None:
    svc.hub.emit(ctx.cycle_id, ctx.workspace, stage, kind, data or {})


def _config(ctx: CycleContext) -> WorkspaceConfig:
    return parse_config(ctx.config, f"cycle {ctx.cycle_id} config")


def _save(svc: Services, ctx: CycleContext, **extra: Any) -> None:
    svc.state.put_cycle(
        ctx.cycle_id,
        {
            "status": ctx.status.value,
            "reason": ctx.reason,
            "ctx": ctx.model_dump(mode="json"),
            **extra,
        },
    )


def _end(svc: Services, ctx: CycleContext, stage: str, status: Status, reason: str) -> CycleContext:
    ctx.status, ctx.reason = status, reason
    if status is Status.SKIPPED:
        emit(svc, ctx, stage, "cycle.skipped", {"reason": reason})
    return ctx


@contextmanager
def _stage(svc: Services, ctx: CycleContext, name: str, always: bool = False) -> Iterator[None]:
    """stage.started / finished / failed around a stage's work; a cycle that already ended passes through
    the work stages silently (its events would only say that nothing happened)."""
    if svc.state.is_finished(ctx.cycle_id):
        raise AlreadyHandled(f"cycle {ctx.cycle_id} has already ended")
    if ctx.ended and not always:
        yield
        return
    emit(svc, ctx, name, "stage.started", {})
    t0 = time.monotonic()
    try:
        yield
    except Exception as exc:
        emit(svc, ctx, name, "stage.failed", {"error": f"{type(exc).__name__}: {exc}"[:500]})
        raise
    _save(svc, ctx)
    emit(
        svc,
        ctx,
        name,
        "stage.finished",
        {"duration_s": round(time.monotonic() - t0, 3), "status": ctx.status.value},
    )


def _gate(svc: Services, ctx: CycleContext, stage: str) -> bool:
    """True when the stage should do its work: the cycle is live, not cancelled, not past its deadline."""
    if ctx.ended:
        return False
    if svc.state.is_cancelled(ctx.cycle_id):
        _end(svc, ctx, stage, Status.CANCELLED, Reason.CANCELLED)
        return False
    if ctx.deadline is not None and _now() >= ctx.deadline:
        _end(svc, ctx, stage, Status.TIMED_OUT, Reason.DEADLINE)
        return False
    return True


# -- enqueue ------------------------------------------------------------------------------------------


def enqueue(
    svc: Services,
    cfg: WorkspaceConfig,
    *,
    trigger: str = "manual",
    dry_run: bool = False,
    ignore_window: bool = True,
    cycle_id: str | None = None,
) -> CycleContext:
    """Writes the queued record and the `cycle.queued` event; the caller then runs or sends the stages."""
    now = utcnow()
    ctx = CycleContext(
        cycle_id=cycle_id or new_cycle_id(),
        workspace=cfg.id,
        config=cfg.model_dump(mode="json", by_alias=True),
        trigger=trigger,
        queued_at=iso(now),
        dry_run=dry_run,
        ignore_window=ignore_window,
    )
    svc.state.put_cycle(
        ctx.cycle_id,
        {
            "cycle_id": ctx.cycle_id,
            "workspace": ctx.workspace,
            "status": Status.QUEUED.value,
            "trigger": trigger,
            "queued_at": ctx.queued_at,
            "queued_at_ts": now.timestamp(),
            "ctx": ctx.model_dump(mode="json"),
        },
    )
    emit(svc, ctx, "start", "cycle.queued", {"trigger": trigger, "dry_run": dry_run})
    return ctx


# -- stages -------------------------------------------------------------------------------------------


def start(ctx: CycleContext, svc: Services) -> CycleContext:
    cfg = _config(ctx)
    with _stage(svc, ctx, "start"):
        if not _gate(svc, ctx, "start"):
            return ctx
        if not ctx.ignore_window and not in_window(cfg, datetime.now(UTC)):
            return _end(svc, ctx, "start", Status.SKIPPED, Reason.OUTSIDE_WINDOW)
        if _policy_denied(svc, ctx, cfg, "start"):
            return ctx
        token = svc.state.acquire_lock(ctx.workspace, cfg.budget.cycle_s + 600)
        if token is None:
            return _end(svc, ctx, "start", Status.SKIPPED, Reason.LOCKED)
        ctx.lock_token = token
        spent = svc.state.get_spend(ctx.workspace, _today())
        if spent >= cfg.budget.daily_cost_usd:
            _end(svc, ctx, "start", Status.SKIPPED, Reason.DAILY_BUDGET_EXHAUSTED)
            return ctx
        now = utcnow()
        ctx.started_at = iso(now)
        ctx.deadline = now.timestamp() + cfg.budget.cycle_s
        ctx.status = Status.RUNNING
        svc.state.put_cycle(
            ctx.cycle_id,
            {
                "started_at": ctx.started_at,
                "deadline": ctx.deadline,
                "lock_token": token,
                "host": socket.gethostname(),
            },
        )
        emit(
            svc,
            ctx,
            "start",
            "cycle.started",
            {
                "deadline": iso(datetime.fromtimestamp(ctx.deadline, UTC)),
                "budget_s": cfg.budget.cycle_s,
                "spent_today_usd": spent,
            },
        )
    return ctx


def analyze(ctx: CycleContext, svc: Services) -> CycleContext:
    cfg = _config(ctx)
    with _stage(svc, ctx, "analyze"):
        if not _gate(svc, ctx, "analyze"):
            return ctx
        # One process: a stage must not start process pools inside a Celery worker child.
        insights = analyze_sessions(cfg.repo_path(), cfg.sessions, cache_dir=svc.state_dir / "cache", workers=1)
        # Session histories hold whatever people typed, tokens included: masked before anything reads them.
        ctx.insights = redact_model(insights)
        ctx.insights.goals = ctx.insights.goals[:20]
    return ctx


def decide(ctx: CycleContext, svc: Services, available: Callable[[str], bool] | None = None) -> CycleContext:
    cfg = _config(ctx)
    with _stage(svc, ctx, "decide"):
        if not _gate(svc, ctx, "decide"):
            return ctx
        since = _now() - cfg.decision.avoid_repeat_days * 86400
        outcome = make_decision(
            insights=ctx.insights,
            cfg=cfg,
            history=svc.state.task_history(ctx.workspace, since),
            backlog=svc.state.list_backlog(ctx.workspace),
            available=available,
            repo=None if cfg.workspace.is_url else cfg.repo_path(),
            deadline=ctx.deadline,
        )
        decision = outcome.decision
        if decision is None:
            reason = Reason.NO_AGENT_AVAILABLE if outcome.reason == "no_agent_available" else Reason.NO_TASK
            return _end(svc, ctx, "decide", Status.SKIPPED, reason)
        # Task, title and rationale reach the agent, commits, the PR and events: no secret from here on.
        decision = redact_model(decision)
        if outcome.took_backlog and not ctx.dry_run:
            svc.state.pop_backlog(ctx.workspace)  # taken once, and only when a cycle really takes it
        ctx.decision = decision
        emit(
            svc,
            ctx,
            "decide",
            "decision.made",
            {
                "title": decision.title,
                "agent": decision.agent,
                "source": decision.source,
                "confidence": decision.confidence,
                "op_hash": decision.op_hash,
                "rationale": decision.rationale,
                "fallback_reason": decision.fallback_reason,
                "estimated_s": decision.estimated_s,
                "runners_up": [{"title": c.title, "score": c.score} for c in outcome.runners_up],
            },
        )
        if ctx.dry_run:
            ctx.status, ctx.reason = Status.SUCCEEDED, None
    return ctx


def _policy_denied(svc: Services, ctx: CycleContext, cfg: WorkspaceConfig, stage: str) -> bool:
    """The host's ceiling (ORCH_ALLOW), checked where the cycle starts and again where the agent runs: a
    config asking for more ends the cycle failed / policy_denied before any agent starts."""
    problems = policy_problems(cfg, HostPolicy.from_settings(get_settings()))
    if not problems:
        return False
    ctx.error = "; ".join(problems)[:1000]
    emit(svc, ctx, stage, "stage.failed", {"error": ctx.error[:500], "reason": Reason.POLICY_DENIED.value})
    _end(svc, ctx, stage, Status.FAILED, Reason.POLICY_DENIED)
    return True


def agent_user() -> RunAs | None:
    """The OS user agents run as on this host (ORCH_AGENT_USER), or None for the worker's own."""
    name = get_settings().agent_user
    return RunAs.lookup(name) if name else None


def agent_on_path(cfg: WorkspaceConfig) -> Callable[[str], bool]:
    return lambda agent: resolve_command(cfg.agents.command_for(agent)) is not None


def execute(ctx: CycleContext, svc: Services) -> CycleContext:
    cfg = _config(ctx)
    with _stage(svc, ctx, "execute"):
        if not _gate(svc, ctx, "execute") or ctx.dry_run or ctx.decision is None:
            return ctx
        if not svc.state.mark_once(ctx.cycle_id, "execute"):
            # A redelivered message (acks_late): the first delivery owns the agent. Never start a second one.
            raise AlreadyHandled("execute was already started for this cycle (redelivered message)")
        if _policy_denied(svc, ctx, cfg, "execute"):
            return ctx
        run_as = agent_user()
        decision = ctx.decision
        repo = wt.repo_dir(cfg, svc.state_dir)
        base = wt.base_commit(repo, cfg.workspace.remote, cfg.workspace.base_branch)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
        ctx.branch = wt.branch_name(cfg.pr.branch_prefix, stamp, decision.title, ctx.cycle_id)
        checkout = wt.create(repo, svc.state_dir, ctx.cycle_id, ctx.branch, base)
        if run_as is not None:
            wt.hand_over(checkout, run_as.name, svc.state_dir)
        path = checkout.path
        ctx.worktree, ctx.base_sha = str(path), base
        _save(svc, ctx, branch=ctx.branch, worktree=ctx.worktree, base_ref=base, repo=str(repo))

        def started(pid: int) -> None:
            # What the janitor needs if this process dies: the agent's group, and who was watching it.
            svc.state.put_cycle(
                ctx.cycle_id,
                {"agent_pid": pid, "agent_pgid": pid, "host": socket.gethostname(), "runner": process_identity()},
            )

        assert ctx.deadline is not None
        agent_deadline = ctx.deadline - wrap_up_s(cfg)

        def run(agent: str) -> AgentResult:
            return run_agent(
                agent=agent,
                cfg=cfg,
                worktree=path,
                prompt=decision.task,
                deadline=agent_deadline,
                emit=lambda kind, data: emit(svc, ctx, "execute", kind, data),
                should_cancel=lambda: svc.state.is_cancelled(ctx.cycle_id),
                on_started=started,
                log_dir=svc.state_dir / "logs" / ctx.cycle_id,
                run_as=run_as,
            )

        result = run(decision.agent)
        other = next((a for a in cfg.agents.allow if a != decision.agent and a in RUNNABLE_AGENTS), None)
        if result.status == "failed" and not result.worked and other is not None:
            # It never got going (missing binary, auth error, crash at start): the other agent gets one try.
            why = f"{decision.agent} failed before doing anything ({result.stop_reason}): {result.summary[:200]}"
            emit(svc, ctx, "execute", "agent.message", {"text": f"{why}; trying {other}", "level": "warning"})
            result = run(other)
            result.fallback_from = decision.agent
            result.fallback_reason = why
        svc.state.put_cycle(ctx.cycle_id, {"agent_pid": None, "agent_pgid": None})
        result.commit = save_work(checkout, decision, ctx.cycle_id, result.status)
        result.files_changed = _files(checkout, base) or result.files_changed
        ctx.agent = result
        if _tampered(svc, ctx, checkout, "execute"):
            pass
        elif result.status == "timed_out":
            ctx.status, ctx.reason = Status.TIMED_OUT, Reason.DEADLINE
        elif result.status == "cancelled":
            ctx.status, ctx.reason = Status.CANCELLED, Reason.CANCELLED
        elif result.status == "failed":
            ctx.status = Status.FAILED
            ctx.reason = (
                result.stop_reason if result.stop_reason in ("idle_timeout", "cost_limit") else Reason.AGENT_FAILED
            )
    return ctx


def _tampered(svc: Services, ctx: CycleContext, checkout: wt.Checkout, stage: str) -> bool:
    """Ends the cycle failed / policy_denied when the guard had to put the git admin dir back (the agent
    wrote its config, hooks or `.git` file); the tracked work was still saved, through the restored dir."""
    checkout.save(svc.state_dir)
    if not checkout.violations:
        return False
    what = ", ".join(checkout.violations[:10])
    ctx.error = f"the agent changed git metadata it must not touch ({what}); restored before any git call"
    emit(svc, ctx, stage, "agent.message", {"level": "error", "text": ctx.error, "reason": "policy_denied"})
    ctx.status, ctx.reason = Status.FAILED, Reason.POLICY_DENIED
    return True


def save_work(checkout: wt.Checkout, decision: Decision, cycle_id: str, agent_status: str) -> str | None:
    """Commits whatever the agent left in the worktree; a WIP commit says so when the run did not succeed.
    Every git call goes through the checkout's guard: a tampered admin dir is restored first."""
    from orchestration.pr import commit_message

    try:
        return git.commit_all(checkout.tree, commit_message(decision, cycle_id, agent_status))
    except (GitError, wt.WorktreeError):
        return None


def _files(checkout: wt.Checkout, base: str) -> list[str]:
    try:
        return git.changed_files(checkout.tree, base)
    except (GitError, wt.WorktreeError):
        return []


def publish(ctx: CycleContext, svc: Services) -> CycleContext:
    from orchestration import pr

    cfg = _config(ctx)
    with _stage(svc, ctx, "publish", always=ctx.worktree is not None):
        # Runs for ended cycles too: a timed-out or cancelled cycle's work is pushed so it is safe.
        if ctx.decision is None or ctx.worktree is None or ctx.branch is None or ctx.dry_run:
            return ctx
        checkout = wt.Checkout.load(svc.state_dir, ctx.cycle_id)
        if checkout is None or not checkout.path.exists() or ctx.base_sha is None:
            ctx.pr = PRResult(status="failed", reason="worktree_missing")
            emit(svc, ctx, "publish", "pr.skipped", {"reason": "worktree_missing"})
            return ctx
        if ctx.reason == Reason.POLICY_DENIED:
            cfg.pr.open_on_failure = False  # its work is kept and pushed, but never proposed
        status = Status.SUCCEEDED if ctx.status is Status.RUNNING else ctx.status
        ctx.pr = pr.publish(
            tree=checkout.tree,
            branch=ctx.branch,
            cfg=cfg,
            cycle_id=ctx.cycle_id,
            decision=ctx.decision,
            agent=ctx.agent,
            cycle_status=status,
            duration_s=_elapsed(ctx),
            base_ref=ctx.base_sha,
            emit=lambda kind, data: emit(svc, ctx, "publish", kind, data),
        )
        if ctx.reason != Reason.POLICY_DENIED:
            _tampered(svc, ctx, checkout, "publish")
    return ctx


def _elapsed(ctx: CycleContext) -> float:
    if not ctx.started_at:
        return 0.0
    return round(_now() - datetime.fromisoformat(ctx.started_at.replace("Z", "+00:00")).timestamp(), 1)


def finish(ctx: CycleContext, svc: Services) -> CycleReport:
    with _stage(svc, ctx, "finish", always=True):
        if ctx.status is Status.RUNNING:
            ctx.status, ctx.reason = Status.SUCCEEDED, None
        report = _close(ctx, svc, announce=False)
    _announce(svc, ctx, report)  # last of all: watchers stop at cycle.finished
    return report


def _close(ctx: CycleContext, svc: Services, announce: bool = True) -> CycleReport:
    """Report, spend, history, lock, worktree: the part of ending a cycle that every path shares."""
    finished = utcnow()
    report = CycleReport(
        cycle_id=ctx.cycle_id,
        workspace=ctx.workspace,
        status=ctx.status,
        reason=ctx.reason,
        started_at=ctx.started_at,
        finished_at=iso(finished),
        duration_s=_elapsed(ctx) if ctx.started_at else None,
        decision=ctx.decision,
        agent=ctx.agent,
        branch=ctx.branch,
        pr=ctx.pr,
    )
    if ctx.agent and ctx.agent.cost_usd and svc.state.mark_once(ctx.cycle_id, "spend"):
        svc.state.add_spend(ctx.workspace, _today(), ctx.agent.cost_usd)
    if ctx.decision and not ctx.dry_run and ctx.started_at and svc.state.mark_once(ctx.cycle_id, "history"):
        svc.state.record_task(
            ctx.workspace,
            {
                "cycle_id": ctx.cycle_id,
                "op_hash": ctx.decision.op_hash,
                "title": ctx.decision.title,
                "agent": ctx.decision.agent,
                "status": ctx.status.value,
                "at": _now(),
            },
        )
    if ctx.lock_token:
        svc.state.release_lock(ctx.workspace, ctx.lock_token)
    checkout = wt.Checkout.load(svc.state_dir, ctx.cycle_id) if ctx.worktree else None
    if checkout is not None and checkout.path.exists():
        # Kept while it holds anything not yet safe elsewhere; `orchestrate gc` retries later.
        cfg = _config(ctx)
        wt.remove_if_safe(checkout, svc.state_dir, cfg.workspace.remote, cfg.permissions.push)
    svc.state.put_cycle(
        ctx.cycle_id,
        {
            "status": ctx.status.value,
            "reason": ctx.reason,
            "finished_at": report.finished_at,
            "report": report.public(),
            "ctx": ctx.model_dump(mode="json"),
        },
    )
    if announce:
        _announce(svc, ctx, report)
    return report


def _announce(svc: Services, ctx: CycleContext, report: CycleReport) -> None:
    emit(
        svc,
        ctx,
        "finish",
        "cycle.finished",
        {"status": ctx.status.value, "reason": ctx.reason, "report": report.public()},
    )


def fail_cycle(
    cycle_id: str, svc: Services, error: str, status: Status = Status.FAILED, reason: str = Reason.STAGE_ERROR
) -> CycleReport | None:
    """The error path: stop the agent if it still runs, save its work, release the lock, write the report.

    Idempotent: a cycle that already ended is left as it is.
    """
    record = svc.state.get_cycle(cycle_id)
    if not record or not isinstance(record.get("ctx"), dict):
        return None
    ctx = CycleContext.model_validate(record["ctx"])
    if record.get("finished_at"):
        return None
    pgid = record.get("agent_pgid")
    if isinstance(pgid, int) and record.get("host") == socket.gethostname() and group_alive(pgid):
        kill_group(pgid)
    emit(svc, ctx, "finish", "stage.failed", {"error": error[:500]})
    checkout = wt.Checkout.load(svc.state_dir, cycle_id) if ctx.worktree else None
    if checkout is not None and checkout.path.exists() and ctx.decision:
        commit = save_work(checkout, ctx.decision, cycle_id, status.value)
        if ctx.agent is None:
            ctx.agent = AgentResult(status="failed", stop_reason=str(reason), summary=error[:500], commit=commit)
        checkout.save(svc.state_dir)
        if checkout.violations:
            status, reason = Status.FAILED, Reason.POLICY_DENIED
            error = f"{error}; the agent changed git metadata it must not touch ({', '.join(checkout.violations[:10])})"
    if ctx.status in (Status.QUEUED, Status.RUNNING, Status.SUCCEEDED) or reason == Reason.POLICY_DENIED:
        ctx.status, ctx.reason = status, str(reason)
    ctx.error = error[:1000]
    return _close(ctx, svc)


def timed_out_by_backstop(ctx: CycleContext, svc: Services) -> CycleContext:
    """Celery's soft time limit fired inside a stage (the stage's own cleanup already killed the agent):
    the cycle, as last recorded, is marked timed out and its work committed; the chain then goes on, so
    publish pushes the work and finish reports."""
    record = svc.state.get_cycle(ctx.cycle_id) or {}
    if isinstance(record.get("ctx"), dict):
        ctx = CycleContext.model_validate(record["ctx"])
    checkout = wt.Checkout.load(svc.state_dir, ctx.cycle_id) if ctx.worktree else None
    if checkout is not None and ctx.decision and ctx.status in (Status.RUNNING, Status.QUEUED):
        save_work(checkout, ctx.decision, ctx.cycle_id, "timed_out")
    ctx.status, ctx.reason = Status.TIMED_OUT, Reason.DEADLINE
    return ctx


def in_window(cfg: WorkspaceConfig, now: datetime) -> bool:
    window = cfg.schedule.window
    if window is None:
        return True
    from zoneinfo import ZoneInfo

    local = now.astimezone(ZoneInfo(cfg.schedule.timezone)).strftime("%H:%M")
    if window.start <= window.end:
        return window.start <= local < window.end
    return local >= window.start or local < window.end  # a window across midnight


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def run_local(ctx: CycleContext, svc: Services) -> CycleReport:
    """All stages in this process, in order; any exception ends the cycle through the error path."""
    try:
        ctx = start(ctx, svc)
        ctx = analyze(ctx, svc)
        ctx = decide(ctx, svc, available=agent_on_path(_config(ctx)))
        ctx = execute(ctx, svc)
        ctx = publish(ctx, svc)
        return finish(ctx, svc)
    except KeyboardInterrupt:
        report = fail_cycle(ctx.cycle_id, svc, "interrupted", Status.CANCELLED, Reason.CANCELLED)
        if report is None:
            raise
        return report
    except Exception as exc:
        report = fail_cycle(ctx.cycle_id, svc, f"{type(exc).__name__}: {exc}")
        if report is None:
            raise
        return report
