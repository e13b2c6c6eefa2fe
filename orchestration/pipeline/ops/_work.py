"""What the worktree steps share: the cycle's worktree (made by the first step that needs one), the decision
the work is named after, and the OS user agents and commands run as."""

from __future__ import annotations

from datetime import UTC, datetime

from orchestration.agents import worktree
from orchestration.agents.base import Emit
from orchestration.agents.process import RunAs
from orchestration.config import WorkspaceConfig
from orchestration.lifecycle import elapsed_s, save
from orchestration.models import CycleContext, Decision, PRResult, Status
from orchestration.pipeline.registry import StepFailed, StepRun
from orchestration.settings import get_settings


def run_as() -> RunAs | None:
    """The OS user agents and `shell.run` commands run as on this host (ORCH_AGENT_USER), or None."""
    name = get_settings().agent_user
    return RunAs.lookup(name) if name else None


def decision_of(ctx: CycleContext, cfg: WorkspaceConfig) -> Decision:
    """The cycle's decision, or for a pipeline without `orchestrate.decide` one that names the pipeline (the
    branch, commits and the PR are named after it)."""
    if ctx.decision is not None:
        return ctx.decision
    return Decision(
        task="",
        title=f"{cfg.id}: pipeline run",
        agent="",
        rationale="a pipeline without a decision step",
        confidence=1.0,
        op_hash="",
    )


def checkout_of(run: StepRun) -> worktree.Checkout:
    """The cycle's worktree on this host; made on a new branch from the pinned base when no step made it yet."""
    ctx, cfg, svc = run.ctx, run.cfg, run.svc
    if ctx.worktree is not None:
        checkout = worktree.Checkout.load(svc.state_dir, ctx.cycle_id)
        if checkout is None or not checkout.path.exists():
            here = get_settings().hostname
            raise StepFailed(f"worktree_missing: the cycle's worktree is on {ctx.host or 'another host'}, not {here}")
        return checkout
    repo = worktree.repo_dir(cfg, svc.state_dir)
    base = worktree.base_commit(repo, cfg.workspace.remote, cfg.workspace.base_branch)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    decision = decision_of(ctx, cfg)
    ctx.branch = worktree.branch_name(cfg.pr.branch_prefix, stamp, decision.title, ctx.cycle_id, decision.issue)
    checkout = worktree.create(repo, svc.state_dir, ctx.cycle_id, ctx.branch, base)
    user = run_as()
    if user is not None:
        worktree.hand_over(checkout, user.name, svc.state_dir)
    ctx.worktree, ctx.base_sha, ctx.host = str(checkout.path), base, get_settings().hostname
    save(svc, ctx, host=ctx.host)
    return checkout


# Publish outcomes a second push of the same commit would only repeat.
SETTLED = frozenset({"permission_denied", "push_disabled", "no_changes", "branch_mismatch"})


def publish_work(
    ctx: CycleContext,
    cfg: WorkspaceConfig,
    checkout: worktree.Checkout,
    decision: Decision,
    emit: Emit,
    *,
    notes: str | None = None,
    propose: bool = True,
    deadline: float | None = None,
) -> PRResult:
    """Commit, check, push and (with `propose`) find or open the PR for the cycle's branch, through the one
    publish path, every push and gh call over by `deadline` when one is given; remembers the commit it
    settled, so that the push at the end does not repeat it."""
    from orchestration import git, pr

    assert ctx.branch is not None and ctx.base_sha is not None
    result = pr.publish(
        tree=checkout.tree,
        branch=ctx.branch,
        cfg=cfg,
        cycle_id=ctx.cycle_id,
        decision=decision,
        agent=ctx.agent,
        cycle_status=Status.SUCCEEDED if ctx.status is Status.RUNNING else ctx.status,
        duration_s=elapsed_s(ctx),
        base_ref=ctx.base_sha,
        emit=emit,
        notes=notes,
        propose=propose,
        deadline=deadline,
    )
    if result.pushed or (result.reason or "").split(":")[0] in SETTLED:
        try:
            ctx.pushed_sha = git.out(["rev-parse", "HEAD"], checkout.tree)
        except (git.GitError, worktree.WorktreeError):
            ctx.pushed_sha = None
    return result
