"""The stages of a cycle as plain functions, shared by the Celery tasks and `orchestrate run --local`.

Each stage takes the cycle context, does its part, records the context in the cycle record (so the error
path can finish what a crashed stage left), and returns it. A cycle that ended early (skipped, cancelled,
timed out) flows through the remaining stages untouched until `finish` writes its report.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from orchestration import git
from orchestration.agents import worktree
from orchestration.agents.registry import queue_name
from orchestration.config import WorkspaceConfig
from orchestration.git import GitError
from orchestration.lifecycle import (
    GRACE_S,
    LOCK_MARGIN_S,
    AlreadyHandled,
    announce_end,
    close,
    config_of,
    deny,
    emit,
    end,
    fail,
    gate,
    release_lock,
    save,
    save_work,
    stage_events,
    today,
)
from orchestration.models import CycleContext, CycleRecord, CycleReport, Reason, Status, StepStatus, iso, utcnow
from orchestration.pipeline import runtime
from orchestration.pipeline.expr import ExprError, has_refs, refs, render
from orchestration.pipeline.manifest import steps_of
from orchestration.pipeline.registry import OPS
from orchestration.pipeline.runtime import init_steps
from orchestration.policy import HostPolicy, policy_problems
from orchestration.services import Services
from orchestration.settings import get_settings

__all__ = [
    "AlreadyHandled",
    "enqueue",
    "finish",
    "plan",
    "run_local",
    "run_step",
    "start",
]

# The queue of the steps before the cycle has a worktree (agent.execute goes to its agent's queue).
STAGE_QUEUE = "orchestrate"


def host_queue(host: str) -> str:
    """The queue of one host's workers: once a cycle has a worktree, every later step is sent there."""
    return f"host.{host}"


def new_cycle_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"


# Celery's (soft, hard) time limits of the bookkeeping tasks around the steps; each step's own come from
# its operation (`plan`). They are the backstop behind the runner's and the steps' own deadlines.
START_LIMIT_S = 60
FINISH_LIMIT_S = 300  # finish may push the branch


@dataclass(frozen=True)
class PlannedStep:
    """One compiled step: what `orchestrate plan` prints and the canvas builder sends."""

    index: int
    op: str
    as_: str | None
    stage: str
    queue: str
    soft_s: int
    hard_s: int
    uses: list[str]
    refs: list[str]
    condition: str | None


def plan(cfg: WorkspaceConfig) -> list[PlannedStep]:
    """The cycle's steps compiled: queue, time limits, permissions used and references of each."""
    out = []
    for i, step in enumerate(steps_of(cfg)):
        op = OPS[step.op]
        soft = op.limit_s(step, cfg)
        queue = STAGE_QUEUE
        if step.op == "agent.execute":
            agent = step.with_.get("agent")
            queue = queue_name(agent if isinstance(agent, str) and not has_refs(agent) else cfg.agents.prefer)
        out.append(
            PlannedStep(
                index=i,
                op=step.op,
                as_=step.as_,
                stage=op.stage,
                queue=queue,
                soft_s=soft,
                hard_s=soft + GRACE_S,
                uses=op.uses(step.with_, cfg),
                refs=sorted({ref.text for _, ref in refs(step.with_)}),
                condition=step.if_,
            )
        )
    return out


# -- enqueue ------------------------------------------------------------------------------------------


def enqueue(
    svc: Services,
    cfg: WorkspaceConfig,
    *,
    trigger: str = "manual",
    dry_run: bool = False,
    ignore_window: bool = True,
    cycle_id: str | None = None,
    delay_s: float = 0.0,
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
    init_steps(ctx, cfg)
    svc.state.save_cycle(CycleRecord(ctx=ctx))
    data: dict[str, object] = {"trigger": trigger, "dry_run": dry_run}
    if delay_s:
        data["delay_s"] = delay_s  # the schedule's jitter: it starts that much later
    emit(svc, ctx, "start", "cycle.queued", data)
    return ctx


# -- stages -------------------------------------------------------------------------------------------


def start(ctx: CycleContext, svc: Services) -> CycleContext:
    cfg = config_of(ctx)
    with stage_events(svc, ctx, "start"):
        if not gate(svc, ctx, "start"):
            return ctx
        if not ctx.ignore_window and not in_window(cfg, datetime.now(UTC)):
            return end(svc, ctx, "start", Status.SKIPPED, Reason.OUTSIDE_WINDOW)
        problems = policy_problems(cfg, HostPolicy.from_settings(get_settings()))
        if problems:  # the host's ceiling (ORCH_ALLOW): more than it allows ends the cycle before anything runs
            return deny(svc, ctx, "start", problems)
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
        ctx.waiting_on, ctx.waiting_since = queue_of(ctx, 0), time.time()  # the first step's queue
        save(svc, ctx, host=get_settings().hostname)
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


def run_step(ctx: CycleContext, svc: Services, index: int) -> CycleContext:
    """Step `index` of the cycle's pipeline (see orchestration.pipeline.runtime); afterwards the record says
    which queue the next step waits in, so that a janitor can tell a cycle nobody will pick up."""
    stored = svc.state.get_cycle(ctx.cycle_id)
    if stored is not None and index < len(stored.ctx.steps) and stored.ctx.steps[index].status != StepStatus.PENDING:
        # A second delivery of a step that already ran (a message given back after its ack was lost):
        # a step never runs twice, and the chain already went on from the first.
        raise AlreadyHandled(f"step {index} already ran ({stored.ctx.steps[index].status})")
    ctx.waiting_on = ctx.waiting_since = None
    ctx = runtime.run_step(ctx, svc, index, then=lambda done: done.handoff or queue_of(done, index + 1))
    if ctx.waiting_on is None:  # the step passed through (its cycle had ended) without writing the record
        waiting(ctx, svc, ctx.handoff or queue_of(ctx, index + 1))
    return ctx


def queue_of(ctx: CycleContext, index: int) -> str:
    """The queue step `index` (or `finish`, past the last) is sent to."""
    known = next_queue(ctx, index)
    if known is not None:
        return known
    steps = plan(config_of(ctx))
    return steps[index].queue if index < len(steps) else STAGE_QUEUE


def waiting(ctx: CycleContext, svc: Services, queue: str) -> None:
    """Records the queue the next step waits in; a record closed meanwhile is left as it is (the next step
    finds it closed and stops there)."""
    ctx.waiting_on, ctx.waiting_since = queue, time.time()
    svc.state.update_cycle(CycleRecord(ctx=ctx), frozenset())


def next_queue(ctx: CycleContext, index: int) -> str | None:
    """The queue step `index` (or `finish`, past the last step) must go to, known only now. Once the cycle
    has a worktree, every later step goes to the host that holds it (`host.<name>`), an agent's step too;
    before that an `agent.execute` goes to its agent's queue (its `agent` argument once substituted, or the
    decision's agent). None: leave it where it is."""
    if ctx.worktree is not None and ctx.host is not None:
        return host_queue(ctx.host)
    cfg = config_of(ctx)
    steps = steps_of(cfg)
    if index >= len(steps) or steps[index].op != "agent.execute":
        return None
    agent = steps[index].with_.get("agent")
    if isinstance(agent, str):
        try:
            value = render(agent, runtime.resolver(ctx, cfg, steps, index))
        except ExprError:
            return None
        return queue_name(value) if isinstance(value, str) and value else None
    if ctx.decision is not None:
        return queue_name(ctx.decision.agent)
    return None


def save_branch(ctx: CycleContext, svc: Services) -> None:
    """Pushes the cycle branch when it holds commits not pushed yet (a pipeline without `pr.create`, or steps
    after it): the work reaches the remote whatever ended the cycle, within `permissions`. Never raises."""
    from orchestration.pipeline.ops._work import decision_of, publish_work

    if ctx.worktree is None or ctx.branch is None or ctx.base_sha is None or ctx.dry_run:
        return
    cfg = config_of(ctx)
    checkout = worktree.Checkout.load(svc.state_dir, ctx.cycle_id)
    if checkout is None or not checkout.path.exists():
        return
    decision = decision_of(ctx, cfg)
    status = Status.SUCCEEDED if ctx.status is Status.RUNNING else ctx.status
    try:
        save_work(checkout, decision, ctx.cycle_id, "succeeded" if status is Status.SUCCEEDED else status.value)
        head = git.out(["rev-parse", "HEAD"], checkout.tree)
    except (GitError, worktree.WorktreeError):
        return
    if head in (ctx.pushed_sha, ctx.base_sha):
        return
    # Bounded like an `always` step after the cycle ended: a remote that never answers cannot hold finish.
    deadline = max(ctx.deadline or 0.0, time.time() + runtime.after_end_s())
    result = publish_work(
        ctx,
        cfg,
        checkout,
        decision,
        lambda kind, data: emit(svc, ctx, "finish", kind, data),
        propose=False,
        deadline=deadline,
    )
    if ctx.pr is None:
        ctx.pr = result


def finish(ctx: CycleContext, svc: Services) -> CycleReport:
    report: CycleReport | None = None
    try:
        with stage_events(svc, ctx, "finish", always=True):
            save_branch(ctx, svc)
            if ctx.status is Status.RUNNING:
                ctx.status, ctx.reason = Status.SUCCEEDED, None
            report = close(ctx, svc, announce=False, release=False)
        announce_end(svc, ctx, report)  # last of all: watchers stop at cycle.finished
    finally:
        if report is not None:  # closed: only now may the workspace's next cycle start (else the error path)
            release_lock(svc, ctx)
    return report


# A scheduled fire that starts this long after its cron time was missed (beat or the workers were down).
LATE_S = 300
# A catch-up waits this long after a fire for the fire itself to start its cycle first.
CATCH_UP_AFTER_S = 120
# How far back a catch-up looks: a fire older than this is not made up for.
CATCH_UP_WITHIN_S = 86400


@dataclass(frozen=True)
class Fire:
    """What a scheduled fire does: start a cycle after `countdown` seconds (the jitter), or why it does not."""

    start: bool
    why: str
    fire_ts: int | None = None
    countdown: float = 0.0


def plan_fire(
    cfg: WorkspaceConfig, svc: Services, now: datetime, *, catch_up: bool = False, rng: random.Random | None = None
) -> Fire:
    """Whether the workspace's latest cron fire (at or before `now`) starts a cycle now. Each fire starts at
    most one cycle, whoever asks (a second beat, a late duplicate, a catch-up): the first to claim it. A late
    fire is dropped under `on_missed: skip`; under `catch_up` the regular check (`catch_up=True`, every
    minute) starts one cycle for the latest missed fire at the next chance inside the window."""
    from orchestration.schedule import previous_fire

    sched = cfg.schedule
    if not sched.cron:
        return Fire(False, "no schedule.cron")
    fire = previous_fire(sched.cron, sched.timezone, now)
    if fire is None:
        return Fire(False, "no fire in the last days")
    late = (now - fire).total_seconds()
    if catch_up:
        if sched.on_missed != "catch_up":
            return Fire(False, "on_missed is skip")
        if late < CATCH_UP_AFTER_S or late > CATCH_UP_WITHIN_S:
            return Fire(False, "no missed fire to make up for")
        if not in_window(cfg, now):
            return Fire(False, "a missed fire waits for the window")
    elif late > LATE_S and sched.on_missed == "skip":
        return Fire(False, f"missed: started {late:.0f} s after its time (on_missed: skip)")
    ts = int(fire.timestamp())
    if not svc.state.claim_fire(cfg.id, ts):
        return Fire(False, "this fire already started a cycle", ts)
    return Fire(True, "catch-up of a missed fire" if catch_up else "due", ts, jitter(cfg, now, rng))


def jitter(cfg: WorkspaceConfig, now: datetime, rng: random.Random | None = None) -> float:
    """A random delay before a scheduled cycle starts, up to `schedule.jitter_s`, never past the window's
    end nor longer than the budget (so that fleets of workspaces do not all start at once)."""
    bound = float(min(cfg.schedule.jitter_s, cfg.budget.cycle_s))
    left = window_left_s(cfg, now)
    if left is not None:
        bound = min(bound, max(0.0, left - 60))  # a minute to spare, so that start still finds the window open
    return round((rng or random.Random()).uniform(0, bound), 3) if bound > 0 else 0.0


def window_left_s(cfg: WorkspaceConfig, now: datetime) -> float | None:
    """Seconds until the window closes (0 outside it), or None without a window."""
    window = cfg.schedule.window
    if window is None:
        return None
    if not in_window(cfg, now):
        return 0.0
    from zoneinfo import ZoneInfo

    local = now.astimezone(ZoneInfo(cfg.schedule.timezone))
    hour, minute = (int(x) for x in window.end.split(":"))
    end = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if end <= local:
        end += timedelta(days=1)  # a window across midnight
    return (end.astimezone(UTC) - now.astimezone(UTC)).total_seconds()


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
        for index in range(len(steps_of(config_of(ctx)))):
            ctx = run_step(ctx, svc, index)
            if ctx.handoff is not None:  # the other agent, here: this process is every host
                ctx.handoff = None
                ctx = run_step(ctx, svc, index)
        return finish(ctx, svc)
    except AlreadyHandled:
        # Closed elsewhere while a stage ran here (the janitor, from another process): that report stands.
        record = svc.state.get_cycle(ctx.cycle_id)
        if record is None or record.report is None:
            raise
        return record.report
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
