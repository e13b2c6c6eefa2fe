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
from datetime import UTC, datetime

from orchestration import git
from orchestration.agents import worktree
from orchestration.agents.process import RunAs, process_identity
from orchestration.agents.registry import AGENTS
from orchestration.agents.runner import resolve_command, run_agent
from orchestration.config import WorkspaceConfig
from orchestration.decide.orchestrator import make_decision
from orchestration.git import GitError
from orchestration.lifecycle import (
    GRACE_S,
    LOCK_MARGIN_S,
    announce_end,
    close,
    config_of,
    elapsed_s,
    emit,
    end,
    fail,
    note_tampering,
    save,
    save_work,
    today,
)
from orchestration.models import (
    AgentResult,
    CycleContext,
    CycleRecord,
    CycleReport,
    PRResult,
    Reason,
    Status,
    StopReason,
    iso,
    utcnow,
)
from orchestration.policy import HostPolicy, policy_problems
from orchestration.redact import redact_model
from orchestration.services import Services
from orchestration.sessions import analyze_sessions
from orchestration.settings import Settings, get_settings

# Time kept back from the agent at the end of the budget for committing, pushing and the PR.
WRAP_UP_MIN_S = 2.0
WRAP_UP_MAX_S = 120.0
WRAP_UP_SHARE = 0.1
# What the broker's visibility timeout must leave beyond a cycle's budget and grace: the stages around
# execute (start, analyze, decide, publish, finish) run within it too.
VISIBILITY_MARGIN_S = 300
# The agent results that end a cycle, and how.
AGENT_END: dict[str, tuple[Status, Reason]] = {
    "timed_out": (Status.TIMED_OUT, Reason.DEADLINE),
    "cancelled": (Status.CANCELLED, Reason.CANCELLED),
}
FAILED_BECAUSE: dict[str | None, Reason] = {
    StopReason.IDLE_TIMEOUT: Reason.IDLE_TIMEOUT,
    StopReason.COST_LIMIT: Reason.COST_LIMIT,
}


class AlreadyHandled(Exception):
    """This delivery of a stage has nothing to do: the cycle already ended, or another delivery of the same
    stage owns it (a redelivered message under acks_late). The Celery layer drops it without a trace."""


def config_problems(cfg: WorkspaceConfig, settings: Settings) -> list[str]:
    """What makes a valid file unusable on this deployment; each line starts with its JSON path."""
    problems = []
    need = cfg.budget.cycle_s + GRACE_S + VISIBILITY_MARGIN_S
    if settings.visibility_timeout_s < need:
        # With acks_late, a stage running past the visibility timeout is redelivered to a second worker
        # while the first still runs.
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


# Celery's (soft, hard) time limits per stage are the backstop behind the runner's own deadline: analyze and
# decide are bounded well inside a long budget, publish by its git and gh timeouts, start and finish are
# bookkeeping.
START_LIMIT_S = 60
ANALYZE_LIMIT_S = 900
DECIDE_LIMIT_S = 600
EXECUTE_SOFT_MARGIN_S = 10  # execute's soft limit: the budget plus this (the runner stops the agent first)
PUBLISH_LIMIT_S = 300
FINISH_LIMIT_S = 90


def stage_limits(cfg: WorkspaceConfig) -> dict[str, tuple[int, int]]:
    """(soft, hard) seconds per stage, derived from the cycle budget; the runner stops the agent first."""
    budget = cfg.budget.cycle_s
    return {
        "start": (START_LIMIT_S, START_LIMIT_S + GRACE_S),
        "analyze": (min(budget, ANALYZE_LIMIT_S), min(budget, ANALYZE_LIMIT_S) + GRACE_S),
        "decide": (min(budget, DECIDE_LIMIT_S), min(budget, DECIDE_LIMIT_S) + GRACE_S),
        "execute": (budget + EXECUTE_SOFT_MARGIN_S, budget + GRACE_S),
        "publish": (PUBLISH_LIMIT_S, PUBLISH_LIMIT_S + GRACE_S),
        "finish": (FINISH_LIMIT_S, FINISH_LIMIT_S + GRACE_S),
    }


def wrap_up_s(cfg: WorkspaceConfig) -> float:
    return min(WRAP_UP_MAX_S, max(WRAP_UP_MIN_S, cfg.budget.cycle_s * WRAP_UP_SHARE))


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
    save(svc, ctx)
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
        end(svc, ctx, stage, Status.CANCELLED, Reason.CANCELLED)
        return False
    if ctx.deadline is not None and time.time() >= ctx.deadline:
        end(svc, ctx, stage, Status.TIMED_OUT, Reason.DEADLINE)
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
    svc.state.save_cycle(CycleRecord(ctx=ctx))
    emit(svc, ctx, "start", "cycle.queued", {"trigger": trigger, "dry_run": dry_run})
    return ctx


# -- stages -------------------------------------------------------------------------------------------


def start(ctx: CycleContext, svc: Services) -> CycleContext:
    cfg = config_of(ctx)
    with _stage(svc, ctx, "start"):
        if not _gate(svc, ctx, "start"):
            return ctx
        if not ctx.ignore_window and not in_window(cfg, datetime.now(UTC)):
            return end(svc, ctx, "start", Status.SKIPPED, Reason.OUTSIDE_WINDOW)
        if _policy_denied(svc, ctx, cfg, "start"):
            return ctx
        token = svc.state.acquire_lock(ctx.workspace, cfg.budget.cycle_s + LOCK_MARGIN_S)
        if token is None:
            return end(svc, ctx, "start", Status.SKIPPED, Reason.LOCKED)
        ctx.lock_token = token
        save(svc, ctx)  # the token is in the record at once: whatever fails next, the error path releases it
        spent = svc.state.get_spend(ctx.workspace, today())
        if spent >= cfg.budget.daily_cost_usd:
            return end(svc, ctx, "start", Status.SKIPPED, Reason.DAILY_BUDGET_EXHAUSTED)
        now = utcnow()
        ctx.started_at = iso(now)
        ctx.deadline = now.timestamp() + cfg.budget.cycle_s
        ctx.status = Status.RUNNING
        save(svc, ctx, host=socket.gethostname())
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
    cfg = config_of(ctx)
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
    cfg = config_of(ctx)
    with _stage(svc, ctx, "decide"):
        if not _gate(svc, ctx, "decide"):
            return ctx
        since = time.time() - cfg.decision.avoid_repeat_days * 86400
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
            return end(svc, ctx, "decide", Status.SKIPPED, reason)
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
    end(svc, ctx, stage, Status.FAILED, Reason.POLICY_DENIED)
    return True


def agent_user() -> RunAs | None:
    """The OS user agents run as on this host (ORCH_AGENT_USER), or None for the worker's own."""
    name = get_settings().agent_user
    return RunAs.lookup(name) if name else None


def agent_on_path(cfg: WorkspaceConfig) -> Callable[[str], bool]:
    return lambda agent: resolve_command(cfg.agents.command_for(agent)) is not None


def execute(ctx: CycleContext, svc: Services) -> CycleContext:
    cfg = config_of(ctx)
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
        repo = worktree.repo_dir(cfg, svc.state_dir)
        base = worktree.base_commit(repo, cfg.workspace.remote, cfg.workspace.base_branch)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
        ctx.branch = worktree.branch_name(cfg.pr.branch_prefix, stamp, decision.title, ctx.cycle_id)
        checkout = worktree.create(repo, svc.state_dir, ctx.cycle_id, ctx.branch, base)
        if run_as is not None:
            worktree.hand_over(checkout, run_as.name, svc.state_dir)
        path = checkout.path
        ctx.worktree, ctx.base_sha = str(path), base
        save(svc, ctx)

        def started(pid: int) -> None:
            # What the janitor needs if this process dies: the agent's group, and who was watching it.
            save(svc, ctx, agent_pgid=pid, host=socket.gethostname(), runner=process_identity())

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
        other = next((a for a in cfg.agents.allow if a != decision.agent and a in AGENTS), None)
        if result.status == "failed" and not result.worked and other is not None:
            # It never got going (missing binary, auth error, crash at start): the other agent gets one try.
            why = f"{decision.agent} failed before doing anything ({result.stop_reason}): {result.summary[:200]}"
            emit(svc, ctx, "execute", "agent.message", {"text": f"{why}; trying {other}", "level": "warning"})
            result = run(other)
            result.fallback_from = decision.agent
            result.fallback_reason = why
        save(svc, ctx, agent_pgid=None)
        result.commit = save_work(checkout, decision, ctx.cycle_id, result.status)
        result.files_changed = _files(checkout, base) or result.files_changed
        ctx.agent = result
        if note_tampering(svc, ctx, checkout, "execute"):
            return ctx  # ended failed / policy_denied, whatever the agent reported
        if result.status in AGENT_END:
            ctx.status, ctx.reason = AGENT_END[result.status]
        elif result.status == "failed":
            ctx.status, ctx.reason = Status.FAILED, FAILED_BECAUSE.get(result.stop_reason, Reason.AGENT_FAILED)
    return ctx


def _files(checkout: worktree.Checkout, base: str) -> list[str]:
    try:
        return git.changed_files(checkout.tree, base)
    except (GitError, worktree.WorktreeError):
        return []


def publish(ctx: CycleContext, svc: Services) -> CycleContext:
    from orchestration import pr

    cfg = config_of(ctx)
    with _stage(svc, ctx, "publish", always=ctx.worktree is not None):
        # Runs for ended cycles too: a timed-out or cancelled cycle's work is pushed so it is safe.
        if ctx.decision is None or ctx.worktree is None or ctx.branch is None or ctx.dry_run:
            return ctx
        checkout = worktree.Checkout.load(svc.state_dir, ctx.cycle_id)
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
            duration_s=elapsed_s(ctx),
            base_ref=ctx.base_sha,
            emit=lambda kind, data: emit(svc, ctx, "publish", kind, data),
        )
        if ctx.reason != Reason.POLICY_DENIED:
            note_tampering(svc, ctx, checkout, "publish")
    return ctx


def finish(ctx: CycleContext, svc: Services) -> CycleReport:
    with _stage(svc, ctx, "finish", always=True):
        if ctx.status is Status.RUNNING:
            ctx.status, ctx.reason = Status.SUCCEEDED, None
        report = close(ctx, svc, announce=False)
    announce_end(svc, ctx, report)  # last of all: watchers stop at cycle.finished
    return report


def in_window(cfg: WorkspaceConfig, now: datetime) -> bool:
    window = cfg.schedule.window
    if window is None:
        return True
    from zoneinfo import ZoneInfo

    local = now.astimezone(ZoneInfo(cfg.schedule.timezone)).strftime("%H:%M")
    if window.start <= window.end:
        return window.start <= local < window.end
    return local >= window.start or local < window.end  # a window across midnight


def run_local(ctx: CycleContext, svc: Services) -> CycleReport:
    """All stages in this process, in order; any exception ends the cycle through the error path."""
    try:
        ctx = start(ctx, svc)
        ctx = analyze(ctx, svc)
        ctx = decide(ctx, svc, available=agent_on_path(config_of(ctx)))
        ctx = execute(ctx, svc)
        ctx = publish(ctx, svc)
        return finish(ctx, svc)
    except KeyboardInterrupt:
        report = fail(ctx.cycle_id, svc, "interrupted", Status.CANCELLED, Reason.CANCELLED)
        if report is None:
            raise
        return report
    except Exception as exc:
        report = fail(ctx.cycle_id, svc, f"{type(exc).__name__}: {exc}")
        if report is None:
            raise
        return report
