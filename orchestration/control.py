"""What the command line and the web monitor do to cycles, written once: start one now, cancel one, and say
where one stands.

Both front ends call these, so that `orchestrate run` and `POST /api/workspaces/{id}/run` enqueue a cycle the
same way (and end its queued record the same way when the broker cannot be reached), and `orchestrate
cancel` and the page's cancel button mean the same thing. Nothing here imports Celery: the caller passes the
function that sends the chain (`tasks.cycle.send_cycle`), since only the front ends may import `tasks/`.
The cycle machinery is imported inside the functions, so that importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestration.config import WorkspaceConfig
    from orchestration.models import CycleContext, CycleRecord, Status
    from orchestration.services import Services
    from orchestration.settings import Settings

Sender = Callable[["CycleContext", "WorkspaceConfig"], object]


class SendFailed(Exception):
    """The cycle's chain could not be handed to the broker; its queued record was ended (failed)."""

    def __init__(self, cycle_id: str, error: Exception) -> None:
        super().__init__(f"could not send cycle {cycle_id} to the broker: {error}")
        self.cycle_id = cycle_id
        self.error = error


def config_problems_here(cfg: WorkspaceConfig, settings: Settings) -> list[str]:
    """What makes a valid config unusable on this host: the deployment's settings and ORCH_ALLOW."""
    from orchestration.deployment import config_problems
    from orchestration.policy import HostPolicy, policy_problems

    return config_problems(cfg, settings) + policy_problems(cfg, HostPolicy.from_settings(settings))


def start_cycle(svc: Services, cfg: WorkspaceConfig, send: Sender, *, dry_run: bool = False) -> CycleContext:
    """Records a queued cycle (and its `cycle.queued` event), then sends its chain with `send`. A broker that
    cannot take it ends the record at once through the error path (nobody would ever run it) and raises
    SendFailed."""
    from orchestration import cycle, lifecycle

    ctx = cycle.enqueue(svc, cfg, trigger="manual", dry_run=dry_run)
    try:
        send(ctx, cfg)
    except Exception as exc:
        lifecycle.fail(ctx.cycle_id, svc, f"could not send the cycle to the broker: {exc}")
        raise SendFailed(ctx.cycle_id, exc) from exc
    return ctx


class CancelOutcome(StrEnum):
    REQUESTED = "requested"
    ALREADY_ENDED = "already_ended"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class CancelResult:
    outcome: CancelOutcome
    status: Status | None = None  # the cycle's status when the cancel was asked for


def request_cancel(svc: Services, cycle_id: str) -> CancelResult:
    """Sets the cycle's cancel flag: its runner stops the agent within seconds, keeps its work and ends the
    cycle `cancelled`; a queued cycle ends so at its first stage. A cycle that already ended is left alone."""
    record = svc.state.get_cycle(cycle_id)
    if record is None:
        return CancelResult(CancelOutcome.NOT_FOUND)
    if record.finished_at:
        return CancelResult(CancelOutcome.ALREADY_ENDED, record.status)
    svc.state.request_cancel(cycle_id)
    return CancelResult(CancelOutcome.REQUESTED, record.status)


def stage_of(record: CycleRecord) -> str:
    """Where a cycle stands: the step running now (or next), or how it ended."""
    ctx = record.ctx
    if ctx.status.ended or record.finished_at:
        return "finished" if record.finished_at else "finishing"
    steps = ctx.steps
    index = ctx.step if ctx.step is not None else next((i for i, s in enumerate(steps) if s.status == "pending"), None)
    if index is None or index >= len(steps):
        return "start" if ctx.status.value == "queued" else "finish"
    step = steps[index]
    return f"{index}:{step.op}" + (f" ({step.as_})" if step.as_ else "")
