"""How a cycle is recorded, ended and closed: the one place that ends a cycle, saves its work, releases its
lock and writes its report.

Every way a cycle can end goes through here: the stages (`cycle.py`), the error path (a stage raised, a
worker child died, a message was revoked or expired: the Celery layer only adapts those to `fail`), the
janitor (a worker died with an agent running), and `run --local`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from orchestration import git
from orchestration.agents import worktree
from orchestration.agents.process import group_alive, identity_alive, kill_group, process_identity
from orchestration.config import WorkspaceConfig, parse_config
from orchestration.deployment import GRACE_S as GRACE_S  # re-exported: the janitor and the tests read it here
from orchestration.git import GitError
from orchestration.models import (
    AgentResult,
    CycleContext,
    CycleRecord,
    CycleReport,
    Decision,
    Reason,
    RunningStage,
    Status,
    StepStatus,
    TaskRecord,
    iso,
    utcnow,
)
from orchestration.services import Services
from orchestration.settings import get_settings
from orchestration.state import LockHold

log = logging.getLogger(__name__)

# The workspace lock outlives the cycle's budget by this much, so that a cycle whose worker died frees its
# workspace on its own even if no janitor runs; a live cycle always releases it by token first.
LOCK_MARGIN_S = 600


class AlreadyHandled(Exception):
    """This delivery of a stage has nothing to do: the cycle already ended, or another delivery of the same
    stage owns it (a redelivered message under acks_late). The Celery layer drops it without a trace."""


def emit(svc: Services, ctx: CycleContext, stage: str, kind: str, data: dict[str, Any] | None = None) -> None:
    """One event of the cycle; while a pipeline step runs, its events carry the step's index and name."""
    data = dict(data or {})
    if ctx.step is not None and ctx.step < len(ctx.steps):
        data.setdefault("step", ctx.step)
        data.setdefault("as", ctx.steps[ctx.step].as_)
    svc.hub.emit(ctx.cycle_id, ctx.workspace, stage, kind, data)


@contextmanager
def stage_events(
    svc: Services,
    ctx: CycleContext,
    name: str,
    always: bool = False,
    then: Callable[[CycleContext], str] | None = None,
) -> Iterator[None]:
    """stage.started / finished / failed around a stage's work; a cycle that already ended passes through
    the work stages silently (its events would only say that nothing happened). While the stage works, the
    record names this process as its runner (see `RunningStage`); when it is done, the record says which
    queue the next step waits in (`then`, worked out from the context the stage leaves), in the same write."""
    if svc.state.is_finished(ctx.cycle_id):
        raise AlreadyHandled(f"cycle {ctx.cycle_id} has already ended")
    if ctx.ended and not always:
        yield
        return
    emit(svc, ctx, name, "stage.started", {})
    save(svc, ctx, stage=RunningStage(host=get_settings().hostname, runner=process_identity(), started=time.time()))
    t0 = time.monotonic()
    try:
        yield
    except AlreadyHandled:  # the cycle was closed elsewhere meanwhile: nothing more to say about it
        raise
    except Exception as exc:
        emit(svc, ctx, name, "stage.failed", {"error": f"{type(exc).__name__}: {exc}"[:500]})
        raise
    if then is not None:
        ctx.waiting_on, ctx.waiting_since = then(ctx), time.time()
    save(svc, ctx, stage=None)
    emit(
        svc,
        ctx,
        name,
        "stage.finished",
        {"duration_s": round(time.monotonic() - t0, 3), "status": ctx.status.value},
    )


def gate(svc: Services, ctx: CycleContext, stage: str) -> bool:
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


def deny(svc: Services, ctx: CycleContext, stage: str, problems: list[str]) -> CycleContext:
    """Ends the cycle failed / policy_denied: it would use more than the config or this host grants."""
    ctx.error = "; ".join(problems)[:1000]
    emit(svc, ctx, stage, "stage.failed", {"error": ctx.error[:500], "reason": Reason.POLICY_DENIED.value})
    return end(svc, ctx, stage, Status.FAILED, Reason.POLICY_DENIED)


@lru_cache(maxsize=32)
def _parsed_config(text: bytes, source: str) -> WorkspaceConfig:
    return parse_config(orjson.loads(text), source)


def config_of(ctx: CycleContext) -> WorkspaceConfig:
    """The cycle's config, parsed once per process however many times a step asks (nothing changes a parsed
    config: it is what the cycle was started with)."""
    return _parsed_config(orjson.dumps(ctx.config), f"cycle {ctx.cycle_id} config")


def today() -> str:
    """The UTC day spend is counted against."""
    return datetime.now(UTC).strftime("%Y-%m-%d")


def elapsed_s(ctx: CycleContext) -> float:
    if not ctx.started_at:
        return 0.0
    return round(time.time() - datetime.fromisoformat(ctx.started_at.replace("Z", "+00:00")).timestamp(), 1)


# -- the record ---------------------------------------------------------------------------------------


def save(svc: Services, ctx: CycleContext, **runner: Any) -> None:
    """Stores the context in the cycle's record, with those of the record's own fields (host, runner
    process, agent group, running stage) given here; the others stay as stored. One write, no read.

    A closed record (one with `finished_at`) is final: only `close` writes one. Saving over it changes
    nothing; when `ctx` is still live (its cycle was ended elsewhere, by the janitor or the error path, while
    this stage ran) it raises AlreadyHandled instead, so that this delivery stops."""
    record = CycleRecord(ctx=ctx, **runner)
    if not svc.state.update_cycle(record, frozenset(runner)) and not ctx.ended:
        raise AlreadyHandled(f"cycle {ctx.cycle_id} was already closed while this stage ran")


def reclaim(svc: Services, ctx: CycleContext, **runner: Any) -> LockHold:
    """For a step that runs long (the agent), every few seconds: when Redis came back without its data, the
    cycle takes its workspace lock again (same token, so that no other cycle starts there meanwhile) and
    writes its record again (with what it knows of its runner), so that the rest of the cycle, the janitor
    and `status` find it. Returns what became of the lock."""
    if not ctx.lock_token:
        return LockHold.HELD
    left = int((ctx.deadline or time.time()) - time.time())
    hold = svc.state.hold_lock(ctx.workspace, ctx.lock_token, max(1, left) + LOCK_MARGIN_S)
    if hold is LockHold.RETAKEN:
        if svc.state.get_cycle(ctx.cycle_id) is None:
            save(svc, ctx, **runner)
            log.warning("cycle %s: its record and lock were gone (Redis lost its data): written again", ctx.cycle_id)
        else:
            log.warning("cycle %s: its workspace lock had expired: taken again", ctx.cycle_id)
    elif hold is LockHold.LOST:
        log.error("cycle %s: another cycle holds the lock of workspace %s", ctx.cycle_id, ctx.workspace)
    return hold


def agent_group_ours(record: CycleRecord) -> bool:
    """Whether the agent group the record names is still the one its cycle started: its leader, the very
    process recorded, is alive (the number could since name a later group). A record without the leader's
    identity (written by an older version) falls back to whether the group has a live member."""
    if record.agent_pgid is None:
        return False
    if record.agent_identity is not None:
        return identity_alive(record.agent_identity)
    return group_alive(record.agent_pgid)


def end(svc: Services, ctx: CycleContext, stage: str, status: Status, reason: Reason) -> CycleContext:
    """Marks the cycle ended; the later stages pass it through and `finish` closes it."""
    ctx.status, ctx.reason = status, reason
    if status is Status.SKIPPED:
        emit(svc, ctx, stage, "cycle.skipped", {"reason": reason.value})
    return ctx


# -- the work -----------------------------------------------------------------------------------------


def save_work(checkout: worktree.Checkout, decision: Decision, cycle_id: str, agent_status: str) -> str | None:
    """Commits whatever the agent left in the worktree; a WIP commit says so when the run did not succeed.
    Every git call goes through the checkout's guard: a tampered admin dir is restored first."""
    from orchestration.pr import commit_message

    try:
        return git.commit_all(checkout.tree, commit_message(decision, cycle_id, agent_status))
    except (GitError, worktree.WorktreeError):
        log.exception("cycle %s: could not commit the agent's work", cycle_id)
        return None


def note_tampering(svc: Services, ctx: CycleContext, checkout: worktree.Checkout, stage: str) -> bool:
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


# -- closing ------------------------------------------------------------------------------------------


def close(ctx: CycleContext, svc: Services, announce: bool = True, release: bool = True) -> CycleReport:
    """Report, spend, history, worktree, record and lock: the part of ending a cycle every path shares.
    `cycle.finished` goes out last of all (watchers stop at it) unless the caller announces it later; the
    lock is released after it, unless the caller (announcing later) releases it itself."""
    ctx.step = None
    for step in ctx.steps:
        if step.status is StepStatus.PENDING:
            step.status = StepStatus.SKIPPED  # never reached: an earlier step ended the cycle
    report = CycleReport(
        cycle_id=ctx.cycle_id,
        workspace=ctx.workspace,
        status=ctx.status,
        reason=ctx.reason,
        started_at=ctx.started_at,
        finished_at=iso(utcnow()),
        duration_s=elapsed_s(ctx) if ctx.started_at else None,
        decision=ctx.decision,
        agent=ctx.agent,
        branch=ctx.branch,
        pr=ctx.pr,
        steps=ctx.steps,
    )
    spent = ctx.spent_usd or (ctx.agent.cost_usd if ctx.agent else 0.0)
    if spent and svc.state.mark_once(ctx.cycle_id, "spend"):
        svc.state.add_spend(ctx.workspace, today(), spent)
    # A decided task is history (not to be repeated soon) when an agent was to work on it; a pipeline that
    # only reports (no agent.execute step) leaves the task for a cycle that will.
    worked_on = any(s.op == "agent.execute" for s in ctx.steps) or not ctx.steps
    if (
        ctx.decision
        and worked_on
        and not ctx.dry_run
        and ctx.started_at
        and svc.state.mark_once(ctx.cycle_id, "history")
    ):
        entry = TaskRecord(
            cycle_id=ctx.cycle_id,
            op_hash=ctx.decision.op_hash,
            title=ctx.decision.title,
            agent=ctx.decision.agent,
            status=ctx.status.value,
            at=time.time(),
        )
        svc.state.record_task(ctx.workspace, entry)
    # The lock goes last: until the record is closed (and the worktree gone from the workspace's clone),
    # the next cycle of this workspace waits, so that no one ever sees two of its cycles running.
    try:
        checkout = worktree.Checkout.load(svc.state_dir, ctx.cycle_id) if ctx.worktree else None
        if checkout is not None and checkout.path.exists():
            # Kept while it holds anything not yet safe elsewhere; `orchestrate gc` retries later.
            cfg = config_of(ctx)
            worktree.remove_if_safe(checkout, svc.state_dir, cfg.workspace.remote, cfg.permissions.push)
        fields = {"agent_pgid": None, "agent_identity": None, "stage": None}
        save(svc, ctx, finished_at=report.finished_at, report=report, **fields)
        if announce:
            announce_end(svc, ctx, report)
    finally:
        if release:
            release_lock(svc, ctx)
    return report


def release_lock(svc: Services, ctx: CycleContext) -> None:
    """Frees the workspace for its next cycle (only if this cycle still holds it: the token says so)."""
    if ctx.lock_token:
        svc.state.release_lock(ctx.workspace, ctx.lock_token)


def announce_end(svc: Services, ctx: CycleContext, report: CycleReport) -> None:
    data = {"status": ctx.status.value, "reason": ctx.reason.value if ctx.reason else None, "report": report.public()}
    emit(svc, ctx, "finish", "cycle.finished", data)


def fail(
    cycle_id: str, svc: Services, error: str, status: Status = Status.FAILED, reason: Reason = Reason.STAGE_ERROR
) -> CycleReport | None:
    """The error path: stop the agent if it still runs here, save its work, release the lock, write the
    report. Idempotent: a cycle that already ended (or that no record knows) is left as it is."""
    record = svc.state.get_cycle(cycle_id)
    if record is None or record.finished_at:
        return None
    ctx = record.ctx
    here = get_settings().hostname
    if record.agent_pgid is not None and record.host == here and agent_group_ours(record):
        kill_group(record.agent_pgid)
    emit(svc, ctx, "finish", "stage.failed", {"error": error[:500]})
    checkout = worktree.Checkout.load(svc.state_dir, cycle_id) if ctx.worktree else None
    if checkout is not None and checkout.path.exists() and ctx.decision:
        commit = save_work(checkout, ctx.decision, cycle_id, status.value)
        if ctx.agent is None:
            ctx.agent = AgentResult(status="failed", stop_reason=reason.value, summary=error[:500], commit=commit)
        try:
            checkout.save(svc.state_dir)
        except OSError as exc:  # a full or read-only disk: the cycle must close all the same
            log.warning("cycle %s: cannot update the guard record: %s", cycle_id, exc)
        if checkout.violations:
            status, reason = Status.FAILED, Reason.POLICY_DENIED
            error = f"{error}; the agent changed git metadata it must not touch ({', '.join(checkout.violations[:10])})"
    running = ctx.steps[ctx.step] if ctx.step is not None and ctx.step < len(ctx.steps) else None
    if running is not None and running.status is StepStatus.PENDING:  # the step it died in
        running.status, running.reason = StepStatus.FAILED, reason.value
    if not ctx.status.ended or ctx.status is Status.SUCCEEDED or reason is Reason.POLICY_DENIED:
        ctx.status, ctx.reason = status, reason
    ctx.error = error[:1000]
    return close(ctx, svc)


def timed_out_by_backstop(ctx: CycleContext, svc: Services) -> CycleContext:
    """Celery's soft time limit fired inside a stage (the stage's own cleanup already killed the agent):
    the cycle, as last recorded, is marked timed out and its work committed; the chain then goes on, so
    publish pushes the work and finish reports."""
    record = svc.state.get_cycle(ctx.cycle_id)
    if record is not None:
        ctx = record.ctx
    checkout = worktree.Checkout.load(svc.state_dir, ctx.cycle_id) if ctx.worktree else None
    if checkout is not None and ctx.decision and not ctx.status.ended:
        save_work(checkout, ctx.decision, ctx.cycle_id, "timed_out")
    ctx.status, ctx.reason = Status.TIMED_OUT, Reason.DEADLINE
    return ctx
