"""`session.analyze`: what people did with their agents in this repository (the insights)."""

from __future__ import annotations

from pydantic import Field, ValidationError

from orchestration.config import AgentName, Sessions, format_validation_error
from orchestration.models import Insights
from orchestration.pipeline.registry import Args, Operation, StepFailed, StepRun, register
from orchestration.redact import redact_model
from orchestration.sessions import analyze_sessions

MAX_GOALS = 20


class AnalyzeArgs(Args):
    providers: list[AgentName] | None = Field(default=None, description="default: the config's sessions.providers")
    since_days: int | None = Field(default=None, gt=0)
    max_sessions: int | None = Field(default=None, ge=1)


@register
class Analyze(Operation[AnalyzeArgs, Insights]):
    name = "session.analyze"
    stage = "analyze"
    summary = "read the Claude Code and Codex session histories of the repository into insights"
    Args = AnalyzeArgs
    Output = Insights
    default_limit_s = 900
    in_dry_run = True

    def run(self, step: StepRun, args: AnalyzeArgs) -> Insights:
        given = args.model_dump(exclude_none=True)
        try:
            sessions = Sessions.model_validate({**step.cfg.sessions.model_dump(), **given})
        except ValidationError as exc:
            raise StepFailed("; ".join(format_validation_error(exc))) from None
        # One process: a stage must not start process pools inside a Celery worker child.
        insights = analyze_sessions(step.cfg.repo_path(), sessions, cache_dir=step.svc.state_dir / "cache", workers=1)
        # Session histories hold whatever people typed, tokens included: masked before anything reads them.
        insights = redact_model(insights)
        insights.goals = insights.goals[:MAX_GOALS]
        return insights
