"""Running one step of a cycle's pipeline: the part every operation shares.

For step `i`: pass an ended cycle through (unless the op runs `always`), check cancel and deadline, decide
the `if`, substitute the arguments from earlier outputs, validate them against the op's model, check the
permissions again on the substituted values (config and this host's ORCH_ALLOW), run the op under the
step's own deadline, and record its output and its entry in the report's `steps`. The Celery tasks
(`orchestrate.op.<op>`) and `run --local` both call `run_step`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from orchestration.config import WorkspaceConfig
from orchestration.lifecycle import config_of, deny, emit, end, gate, stage_events
from orchestration.models import CycleContext, Reason, Status, StepReport, StepStatus, iso
from orchestration.pipeline.expr import Condition, ExprError, Ref, lookup, render
from orchestration.pipeline.manifest import Step, steps_of
from orchestration.pipeline.registry import OPS, Operation, StepDenied, StepFailed, StepHandOff, StepRun
from orchestration.services import Services


def init_steps(ctx: CycleContext, cfg: WorkspaceConfig) -> None:
    ctx.steps = [StepReport(op=s.op, as_=s.as_) for s in steps_of(cfg)]


def resolver(ctx: CycleContext, cfg: WorkspaceConfig, steps: list[Step], index: int) -> Any:
    """`${...}` → value, for step `index`: earlier outputs by name, the built-ins, allowed env names."""
    names = {s.as_: j for j, s in enumerate(steps[:index]) if s.as_}

    def resolve(ref: Ref) -> Any:
        if ref.root == "env":
            name = ref.path[0] if ref.path else ""
            return os.environ.get(name) if name in cfg.env_allow else None
        if ref.root == "cycle":
            deadline = iso(datetime.fromtimestamp(ctx.deadline, UTC)) if ctx.deadline else None
            reason = ctx.reason.value if ctx.reason else None
            cycle = {"id": ctx.cycle_id, "deadline": deadline, "status": ctx.status.value, "reason": reason}
            return lookup(cycle, ref.path)
        if ref.root == "workspace":
            return lookup({"id": cfg.id, "repo": cfg.workspace.repo}, ref.path)
        if ref.root == "date":
            return datetime.now(UTC).strftime("%Y-%m-%d")
        j = names.get(ref.root)
        return None if j is None else lookup(ctx.outputs.get(str(j)), ref.path)

    return resolve


def after_end_s() -> float:
    """How long an `always` step that runs after the cycle ended (past its deadline, perhaps) gets at least:
    ORCH_AFTER_END_S, 15 s by default."""
    from orchestration.settings import get_settings

    return get_settings().after_end_s


def runs_after_end(op: Operation[Any, Any], ctx: CycleContext) -> bool:
    """Whether `op` still runs for this cycle once it has ended: `always` ops do (pr.create pushes the work,
    http.notify tells the webhook how it went), but not for a cycle that was skipped or a dry run, and a
    worktree op only when there is a worktree."""
    if not op.always or ctx.status is Status.SKIPPED or ctx.dry_run:
        return False
    return ctx.worktree is not None or not op.worktree


def run_step(
    ctx: CycleContext, svc: Services, index: int, then: Callable[[CycleContext], str] | None = None
) -> CycleContext:
    """Step `index`; `then` names the queue the next step waits in, recorded when this one is done."""
    cfg = config_of(ctx)
    steps = steps_of(cfg)
    if not ctx.steps:
        init_steps(ctx, cfg)
    op = OPS[steps[index].op]
    entry = ctx.steps[index]
    always = runs_after_end(op, ctx)
    ctx.step = index
    try:
        with stage_events(svc, ctx, op.stage, always=always, then=then):
            if (ctx.ended and not always) or (ctx.dry_run and not op.in_dry_run):
                entry.status = StepStatus.SKIPPED
                return ctx
            if not ctx.ended and not gate(svc, ctx, op.stage):
                entry.status = StepStatus.SKIPPED
                return ctx
            _run(ctx, svc, cfg, steps, index)
    finally:
        ctx.step = None
    return ctx


def _run(ctx: CycleContext, svc: Services, cfg: WorkspaceConfig, steps: list[Step], index: int) -> None:
    step, op, entry = steps[index], OPS[steps[index].op], ctx.steps[index]
    resolve = resolver(ctx, cfg, steps, index)
    t0 = time.monotonic()
    where = f"pipeline[{index}] ({step.op})"
    try:
        if step.if_ is not None and not Condition.parse(step.if_).holds(resolve):
            entry.status, entry.reason = StepStatus.SKIPPED, "if"
            ctx.outputs[str(index)] = None
            emit(svc, ctx, op.stage, "stage.skipped", {"if": step.if_})
            return
        raw = render(step.with_, resolve)
    except ExprError as exc:
        _failed(svc, ctx, op.stage, entry, f"{where}: {exc}")
        return
    try:
        args = op.Args.model_validate(raw, strict=True)
    except ValidationError as exc:
        lines = [f"{where} with.{line}" for line in _arg_errors(exc)]
        _failed(svc, ctx, op.stage, entry, "; ".join(lines))
        return
    from orchestration.policy import HostPolicy
    from orchestration.settings import get_settings

    problems = op.needs(args.model_dump(mode="json", by_alias=True), cfg, HostPolicy.from_settings(get_settings()))
    if problems:
        entry.status, entry.reason = StepStatus.FAILED, Reason.POLICY_DENIED.value
        deny(svc, ctx, op.stage, [f"{where}: {arg + ': ' if arg else ''}{p}" for arg, p in problems])
        return
    deadline = ctx.deadline if ctx.deadline is not None else time.time() + cfg.budget.cycle_s
    if ctx.ended:
        deadline = max(deadline, time.time() + after_end_s())
    if step.timeout_s is not None:
        deadline = min(deadline, time.time() + step.timeout_s)
    run = StepRun(
        ctx=ctx,
        svc=svc,
        cfg=cfg,
        index=index,
        step=step,
        deadline=deadline,
        emit=lambda kind, data: emit(svc, ctx, op.stage, kind, data),
    )
    try:  # the record knows which step runs (stage_events saved it): the error path marks it failed
        output = op.run(run, args)
    except StepFailed as exc:
        entry.duration_s = round(time.monotonic() - t0, 3)
        if exc.output is not None:
            ctx.outputs[str(index)] = exc.output.model_dump(mode="json")
        _failed(svc, ctx, op.stage, entry, f"{where}: {exc}")
        return
    except StepHandOff as exc:
        ctx.handoff = exc.queue  # the step stays pending: it runs again there
        emit(svc, ctx, op.stage, "agent.message", {"text": f"{where}: {exc}", "level": "warning"})
        return
    except StepDenied as exc:
        entry.status, entry.reason = StepStatus.FAILED, Reason.POLICY_DENIED.value
        entry.duration_s = round(time.monotonic() - t0, 3)
        deny(svc, ctx, op.stage, [f"{where}: {exc}"])
        return
    entry.duration_s = round(time.monotonic() - t0, 3)
    ctx.outputs[str(index)] = None if output is None else output.model_dump(mode="json")
    if entry.status is StepStatus.PENDING:
        entry.status = StepStatus.SUCCEEDED


def _arg_errors(exc: ValidationError) -> list[str]:
    """What is wrong with the substituted arguments, by path, never their values: a substituted value may
    hold a token (`${env.NAME}` in a URL's query or a header), and this text goes to events and the record."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [p for p in err["loc"] if p not in ("function-after", "function-before")]
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "(arguments)"
        msg = "unknown argument" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {msg}")
    return lines


def _failed(svc: Services, ctx: CycleContext, stage: str, entry: StepReport, error: str) -> None:
    """The step could not do its work: the cycle ends failed / step_failed (its work is kept by the
    steps that save it: pr.create, or the push at finish)."""
    entry.status, entry.reason = StepStatus.FAILED, Reason.STEP_FAILED.value
    ctx.error = error[:1000]
    emit(svc, ctx, stage, "stage.failed", {"error": error[:500], "reason": Reason.STEP_FAILED.value})
    if not ctx.ended:
        end(svc, ctx, stage, Status.FAILED, Reason.STEP_FAILED)
