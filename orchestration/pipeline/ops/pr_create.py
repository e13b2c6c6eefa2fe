"""`pr.create`: commit what is left, check every change against `permissions`, push the branch, and find or
open the draft PR, through the same path as the default pipeline's publish. It also runs for a cycle that
already ended (timed out, failed), so that the work is pushed; whether a PR opens then is `pr`'s
`open_on_failure`. Without `push`/`open_pr` or with `pr.enabled: false` it skips, saying why."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from orchestration.config import Label, RefName, WorkspaceConfig
from orchestration.lifecycle import note_tampering
from orchestration.models import PRResult, Reason, StepStatus
from orchestration.pipeline.ops._work import checkout_of, decision_of, publish_work
from orchestration.pipeline.registry import Args, Operation, StepRun, register

MAX_TITLE = 240


class PRArgs(Args):
    title: str | None = Field(
        default=None, min_length=1, max_length=MAX_TITLE, description="default: the decision's title"
    )
    body: str | None = Field(default=None, description="a notes section in the PR body (shown as plain text)")
    draft: bool | None = Field(default=None, description="default: pr.draft")
    labels: list[Label] | None = Field(default=None, description="default: pr.labels")
    base: RefName | None = Field(default=None, description="default: pr.base, or workspace.base_branch")


class PROutput(BaseModel):
    status: Literal["created", "exists", "skipped", "failed"]
    url: str | None = None
    number: int | None = None
    branch: str | None = None
    reason: str | None = None


@register
class CreatePR(Operation[PRArgs, PROutput]):
    name = "pr.create"
    stage = "publish"
    summary = "push the branch (changes checked against permissions) and open or find its draft PR"
    Args = PRArgs
    Output = PROutput
    worktree = True
    always = True

    def uses(self, args: dict[str, Any], cfg: WorkspaceConfig | None) -> list[str]:
        return ["push", "open_pr"]

    def run(self, step: StepRun, args: PRArgs) -> PROutput:
        ctx, svc = step.ctx, step.svc
        entry = ctx.steps[step.index]
        if ctx.worktree is None or ctx.dry_run:
            entry.status, entry.reason = StepStatus.SKIPPED, "no_worktree"
            step.emit("pr.skipped", {"reason": "no_worktree"})
            return PROutput(status="skipped", reason="no_worktree")
        try:
            checkout = checkout_of(step)
        except Exception:
            ctx.pr = PRResult(status="failed", reason="worktree_missing")
            step.emit("pr.skipped", {"reason": "worktree_missing"})
            entry.status, entry.reason = StepStatus.FAILED, "worktree_missing"
            return PROutput(status="failed", reason="worktree_missing", branch=ctx.branch)
        assert ctx.branch is not None and ctx.base_sha is not None
        overrides = {
            k: v for k, v in {"draft": args.draft, "labels": args.labels, "base": args.base}.items() if v is not None
        }
        cfg = step.cfg.model_copy(update={"pr": step.cfg.pr.model_copy(update=overrides)}) if overrides else step.cfg
        if ctx.reason == Reason.POLICY_DENIED:
            # Its work is kept and pushed, but never proposed.
            cfg = cfg.model_copy(update={"pr": cfg.pr.model_copy(update={"open_on_failure": False})})
        decision = decision_of(ctx, step.cfg)
        if args.title:
            decision = decision.model_copy(update={"title": args.title})
        ctx.pr = result = publish_work(ctx, cfg, checkout, decision, step.emit, notes=args.body, deadline=step.deadline)
        if ctx.reason != Reason.POLICY_DENIED:
            note_tampering(svc, ctx, checkout, self.stage)
        if result.status in ("skipped", "failed"):
            entry.status = StepStatus.SKIPPED if result.status == "skipped" else StepStatus.FAILED
            entry.reason = result.reason
        return PROutput(
            status=result.status, url=result.url, number=result.number, branch=ctx.branch, reason=result.reason
        )
