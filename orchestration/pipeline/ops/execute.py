"""`agent.execute`: a coding agent CLI, headless, in the cycle's worktree, under the step's deadline and
what is left of the cycle's cost cap. A second `agent.execute` works in the same worktree (a reviewer
after a writer)."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, Field

from orchestration import git
from orchestration.agents import worktree
from orchestration.agents.process import process_identity
from orchestration.agents.registry import AGENTS, queue_name
from orchestration.agents.runner import run_agent
from orchestration.config import WorkspaceConfig
from orchestration.git import GitError
from orchestration.lifecycle import LOCK_MARGIN_S, deny, note_tampering, reclaim, save, save_work
from orchestration.models import AgentResult, Fallback, Reason, Status, StopReason
from orchestration.pipeline.expr import has_refs
from orchestration.pipeline.ops._work import checkout_of, decision_of, run_as
from orchestration.pipeline.registry import Args, Operation, StepFailed, StepHandOff, StepRun, register
from orchestration.policy import HostPolicy, policy_problems
from orchestration.settings import get_settings

# Time kept back from the agent at the end of the budget for committing, pushing and the PR.
WRAP_UP_MIN_S = 2.0
WRAP_UP_MAX_S = 120.0
WRAP_UP_SHARE = 0.1
EXECUTE_SOFT_MARGIN_S = 10  # Celery's soft limit: the budget plus this (the runner stops the agent first)
# The agent results that end a cycle, and how.
AGENT_END: dict[str, tuple[Status, Reason]] = {
    "timed_out": (Status.TIMED_OUT, Reason.DEADLINE),
    "cancelled": (Status.CANCELLED, Reason.CANCELLED),
}
FAILED_BECAUSE: dict[str | None, Reason] = {
    StopReason.IDLE_TIMEOUT: Reason.IDLE_TIMEOUT,
    StopReason.COST_LIMIT: Reason.COST_LIMIT,
}
assert LOCK_MARGIN_S > EXECUTE_SOFT_MARGIN_S


def wrap_up_s(cfg: WorkspaceConfig) -> float:
    return min(WRAP_UP_MAX_S, max(WRAP_UP_MIN_S, cfg.budget.cycle_s * WRAP_UP_SHARE))


class ExecuteArgs(Args):
    agent: str | None = Field(default=None, description="an agent in agents.allow; default: the decision's agent")
    prompt: str | None = Field(default=None, min_length=1, description="default: the decision's task")
    max_cost_usd: float | None = Field(
        default=None, gt=0, description="this run's cap, within what is left of budget.max_cost_usd"
    )
    timeout_s: int | None = Field(default=None, gt=0, description="this run's limit, within the cycle's")


class ExecuteOutput(BaseModel):
    status: Literal["succeeded", "failed", "timed_out", "cancelled"]
    reason: str | None = None
    agent: str
    cost_usd: float = 0.0
    num_turns: int = 0
    summary: str = ""
    files_changed: list[str] = Field(default_factory=list)
    branch: str | None = None


@register
class Execute(Operation[ExecuteArgs, ExecuteOutput]):
    name = "agent.execute"
    stage = "execute"
    summary = "run a coding agent CLI headless in the cycle's worktree"
    Args = ExecuteArgs
    Output = ExecuteOutput
    worktree = True

    def check(self, args: dict[str, Any], before: list[str], cfg: WorkspaceConfig | None) -> list[tuple[str, str]]:
        problems = []
        agent = args.get("agent")
        if isinstance(agent, str) and not has_refs(agent):
            if agent not in AGENTS:
                problems.append(("agent", f"unknown agent {agent!r} (known: {', '.join(AGENTS)})"))
            elif cfg is not None and agent not in cfg.agents.allow:
                problems.append(("agent", f"{agent!r} is not in agents.allow {cfg.agents.allow}"))
        if "orchestrate.decide" not in before and "prompt" not in args:
            problems.append(("prompt", "required when no orchestrate.decide step comes before"))
        return problems

    def uses(self, args: dict[str, Any], cfg: WorkspaceConfig | None) -> list[str]:
        agent = args.get("agent") or "the decision's agent"
        return [f"agent: {agent}", "write"]

    def limit_s(self, step: Any, cfg: WorkspaceConfig) -> int:
        return cfg.budget.cycle_s + EXECUTE_SOFT_MARGIN_S

    def run(self, step: StepRun, args: ExecuteArgs) -> ExecuteOutput:
        ctx, svc, cfg = step.ctx, step.svc, step.cfg
        handed = ctx.fallback if ctx.fallback is not None and ctx.fallback.step == step.index else None
        agent = handed.agent if handed else args.agent or (ctx.decision.agent if ctx.decision else cfg.agents.prefer)
        if not svc.state.mark_once(ctx.cycle_id, f"execute:{step.index}:{agent}"):
            # A redelivered message (acks_late): the first delivery owns the agent. Never start a second one.
            from orchestration.lifecycle import AlreadyHandled

            raise AlreadyHandled("execute was already started for this cycle (redelivered message)")
        problems = policy_problems(cfg, HostPolicy.from_settings(get_settings()))
        if problems:  # this host's ceiling, checked again where the agent would run
            deny(svc, ctx, self.stage, problems)
            return ExecuteOutput(status="failed", reason=Reason.POLICY_DENIED.value, agent=args.agent or "")
        decision = decision_of(ctx, cfg)
        prompt = args.prompt or decision.task
        if agent not in cfg.agents.allow or agent not in AGENTS:
            raise StepFailed(f"agent {agent!r} is not in agents.allow {cfg.agents.allow}")
        if not prompt:
            raise StepFailed("no prompt: give `prompt`, or run orchestrate.decide before")
        left = cfg.budget.max_cost_usd - ctx.spent_usd
        cap = min(args.max_cost_usd or left, left)
        if cap <= 0:
            raise StepFailed(f"budget.max_cost_usd ({cfg.budget.max_cost_usd}) is spent: nothing left for this run")
        run_cfg = cfg.model_copy(update={"budget": cfg.budget.model_copy(update={"max_cost_usd": cap})})
        checkout = checkout_of(step)
        path, base = checkout.path, ctx.base_sha
        deadline = min(step.deadline, (ctx.deadline or step.deadline) - wrap_up_s(cfg))
        if args.timeout_s is not None:
            deadline = min(deadline, time.time() + args.timeout_s)

        runner: dict[str, Any] = {}

        def started(pid: int) -> None:
            # What the janitor needs if this process dies: the agent's group and its leader (to tell it from a
            # later group with the same number), and who was watching it.
            leader, here = process_identity(pid), get_settings().hostname
            runner.update(agent_pgid=pid, agent_identity=leader, host=here, runner=process_identity())
            save(svc, ctx, **runner)

        def should_cancel() -> bool:  # every second, off the agent's loop
            reclaim(svc, ctx, **runner)
            return svc.state.is_cancelled(ctx.cycle_id)

        def one(name: str) -> AgentResult:
            return run_agent(
                agent=name,
                cfg=run_cfg,
                worktree=path,
                prompt=prompt,
                deadline=deadline,
                emit=step.emit,
                should_cancel=should_cancel,
                on_started=started,
                log_dir=svc.state_dir / "logs" / ctx.cycle_id,
                run_as=run_as(),
            )

        result = one(agent)
        other = next((a for a in cfg.agents.allow if a != agent and a in AGENTS), None)
        if result.status == "failed" and not result.worked and other is not None and not args.agent and not handed:
            # It never got going (missing binary, auth error, crash at start): the other agent gets one try, on
            # a host that has it. Nothing was written here, so this worktree is given up; that host makes its own.
            why = f"{agent} failed before doing anything ({result.stop_reason}): {result.summary[:200]}"
            step.emit("agent.message", {"text": f"{why}; handing the task to {other}", "level": "warning"})
            save(svc, ctx, agent_pgid=None, agent_identity=None)
            ctx.spent_usd = round(ctx.spent_usd + result.cost_usd, 6)
            worktree.remove(checkout, svc.state_dir)
            ctx.worktree = ctx.host = ctx.branch = ctx.base_sha = None
            ctx.fallback = Fallback(step=step.index, agent=other, from_agent=agent, reason=why)
            raise StepHandOff(queue_name(other), f"{agent} never started; {other} takes the step")
        if handed:
            result.fallback_from, result.fallback_reason = handed.from_agent, handed.reason
        save(svc, ctx, agent_pgid=None, agent_identity=None)
        ctx.spent_usd = round(ctx.spent_usd + result.cost_usd, 6)
        result.commit = save_work(checkout, decision, ctx.cycle_id, result.status)
        result.files_changed = _files(checkout, base) or result.files_changed
        if ctx.agent is None:
            ctx.agent = result  # the report's agent: the cycle's first run (each run is in its step's output)
        output = ExecuteOutput(
            status=result.status,
            reason=result.stop_reason,
            agent=agent,
            cost_usd=result.cost_usd,
            num_turns=result.num_turns,
            summary=result.summary,
            files_changed=result.files_changed,
            branch=ctx.branch,
        )
        if note_tampering(svc, ctx, checkout, self.stage):
            return output  # ended failed / policy_denied, whatever the agent reported
        if result.status in AGENT_END:
            ctx.status, ctx.reason = AGENT_END[result.status]
        elif result.status == "failed":
            ctx.status, ctx.reason = Status.FAILED, FAILED_BECAUSE.get(result.stop_reason, Reason.AGENT_FAILED)
        if result.status != "succeeded":
            ctx.steps[step.index].status = ctx.steps[step.index].status.FAILED
            ctx.steps[step.index].reason = result.stop_reason or result.status
        return output


def _files(checkout: worktree.Checkout, base: str | None) -> list[str]:
    if base is None:
        return []
    try:
        return git.changed_files(checkout.tree, base)
    except (GitError, worktree.WorktreeError):
        return []
