"""`orchestrate.decide`: the one task this cycle works on (no task: the cycle ends skipped, nothing after
it runs)."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from orchestration.agents.runner import agents_on_path
from orchestration.config import DecisionConfig
from orchestration.decide.orchestrator import make_decision
from orchestration.lifecycle import end
from orchestration.models import Decision, Insights, Reason, Status
from orchestration.pipeline.registry import Args, Operation, StepRun, register
from orchestration.redact import redact_model


class DecideArgs(Args):
    goals: list[str] = Field(default_factory=list, description="added to the config's goals, ahead of them")
    backend: Literal["heuristic", "llm", "auto"] | None = Field(default=None, description="default: decision.backend")


def insights_of(step: StepRun) -> Insights:
    """The latest `session.analyze` output of this cycle (none: no history to go on)."""
    for i in range(step.index - 1, -1, -1):
        if step.ctx.steps[i].op == "session.analyze" and step.ctx.outputs.get(str(i)) is not None:
            return Insights.model_validate(step.ctx.outputs[str(i)])
    return Insights()


@register
class Decide(Operation[DecideArgs, Decision]):
    name = "orchestrate.decide"
    stage = "decide"
    summary = "choose the one task to work on, its agent and why (LLM with a heuristic fallback)"
    Args = DecideArgs
    Output = Decision
    default_limit_s = 600
    in_dry_run = True

    def run(self, step: StepRun, args: DecideArgs) -> Decision | None:  # type: ignore[override]
        ctx, svc = step.ctx, step.svc
        cfg = step.cfg
        goals = [g for g in args.goals if g.strip()]
        if goals or args.backend:
            decision_cfg = (
                cfg.decision
                if not args.backend
                else DecisionConfig.model_validate({**cfg.decision.model_dump(), "backend": args.backend})
            )
            cfg = cfg.model_copy(update={"goals": [*goals, *cfg.goals], "decision": decision_cfg})
        since = time.time() - cfg.decision.avoid_repeat_days * 86400
        # Run here, in this process: only the agents on this PATH can run. On a fleet the agent's own
        # queue finds a host that has it.
        local = ctx.trigger == "local"
        outcome = make_decision(
            insights=insights_of(step),
            cfg=cfg,
            history=svc.state.task_history(ctx.workspace, since),
            backlog=svc.state.list_backlog(ctx.workspace),
            available=agents_on_path(cfg) if local else None,
            repo=None if cfg.workspace.is_url else cfg.repo_path(),
            deadline=ctx.deadline,
        )
        decision = outcome.decision
        if decision is None:
            reason = Reason.NO_AGENT_AVAILABLE if outcome.reason == "no_agent_available" else Reason.NO_TASK
            end(svc, ctx, self.stage, Status.SKIPPED, reason)
            return None
        # Task, title and rationale reach the agent, commits, the PR and events: no secret from here on.
        decision = redact_model(decision)
        if outcome.took_backlog and not ctx.dry_run:
            svc.state.pop_backlog(ctx.workspace)  # taken once, and only when a cycle really takes it
        ctx.decision = decision
        step.emit(
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
                "evidence": [e.id for e in decision.evidence],
                "issue": decision.issue,
                "source_errors": decision.source_errors,
            },
        )
        if ctx.dry_run:
            ctx.status, ctx.reason = Status.SUCCEEDED, None
        return decision
