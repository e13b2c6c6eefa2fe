"""`git.commit`: commit the worktree's changes (all, or the given paths) as a step of its own, so that a
pipeline can commit in steps. Nothing leaves the machine here: every change is checked against
`permissions` before any push (pr.create, or the push when the cycle ends)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

from orchestration import git
from orchestration.agents.worktree import WorktreeError
from orchestration.config import WorkspaceConfig
from orchestration.git import GitError
from orchestration.lifecycle import note_tampering
from orchestration.pipeline.ops._work import checkout_of, decision_of
from orchestration.pipeline.registry import Args, Operation, StepFailed, StepRun, register
from orchestration.redact import default_redactor, strip_control


def _relative_path(v: str) -> str:
    """A path inside the worktree, never read by git as a pathspec magic or an option."""
    if not v or v.startswith(("/", ":", "-")) or "\\" in v or any(p == ".." for p in v.split("/")):
        raise ValueError("expected a relative path inside the worktree (no '..', not starting with '/', ':' or '-')")
    if re.search(r"[\x00-\x1f]", v):
        raise ValueError("control characters are not allowed")
    return v


RelPath = Annotated[str, AfterValidator(_relative_path)]


class CommitArgs(Args):
    message: str | None = Field(default=None, min_length=1, description="default: the decision's title")
    paths: list[RelPath] = Field(default_factory=list, description="default: every change")


class CommitOutput(BaseModel):
    sha: str | None = None
    files: list[str] = Field(default_factory=list)


@register
class Commit(Operation[CommitArgs, CommitOutput]):
    name = "git.commit"
    stage = "commit"
    summary = "commit the worktree's changes (all, or some paths) on the cycle branch"
    Args = CommitArgs
    Output = CommitOutput
    worktree = True
    default_limit_s = 120

    def uses(self, args: dict[str, Any], cfg: WorkspaceConfig | None) -> list[str]:
        return ["write"]

    def run(self, step: StepRun, args: CommitArgs) -> CommitOutput:
        from orchestration.pr import commit_message

        ctx = step.ctx
        checkout = checkout_of(step)
        message = commit_message(decision_of(ctx, step.cfg), ctx.cycle_id)
        if args.message:
            text = " ".join(strip_control(default_redactor().text(args.message)).split())[:200]
            message = f"{text}\n\nOrchestrate-Cycle: {ctx.cycle_id}\n"
        try:
            sha = git.commit_all(checkout.tree, message, args.paths)
            files = (
                sorted(
                    git.out(["diff-tree", "--no-commit-id", "--name-only", "-r", "-z", sha], checkout.tree).split("\0")
                )
                if sha
                else []
            )
        except (GitError, WorktreeError) as exc:
            raise StepFailed(f"commit failed: {str(exc)[-300:]}") from None
        note_tampering(step.svc, ctx, checkout, self.stage)
        return CommitOutput(sha=sha, files=[f for f in files if f])
