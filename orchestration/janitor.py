"""Cleanup after what the normal path cannot clean: a worker killed mid-run, a host gone silent, a cycle
stuck past its budget, and worktrees left behind. Runs when a worker starts, every few heartbeats in each
worker, periodically from beat, and as `orchestrate gc`."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from orchestration.agents import worktree
from orchestration.agents.process import identity_alive
from orchestration.config import ConfigError
from orchestration.cycle import FINISH_LIMIT_S, plan
from orchestration.lifecycle import GRACE_S, config_of, fail
from orchestration.models import CycleContext, CycleRecord, Reason, Status, WorkerBeat
from orchestration.services import Services
from orchestration.settings import get_settings

log = logging.getLogger(__name__)

# A cycle this far past its deadline on the host that runs it is taken as stuck, unless a live process here
# still runs its current stage within that stage's own limit (a step or finish begun near the deadline).
LOCAL_STUCK_S = 3 * GRACE_S
# A cycle this far past its deadline on another host is taken as lost (its host or worker is gone).
FOREIGN_STUCK_S = 3600


@dataclass
class Reaped:
    cycle_id: str
    reason: Reason


def reap(svc: Services, host: str | None = None, now: float | None = None, scan: int = 500) -> list[Reaped]:
    """Ends the cycles whose runner is gone: kills the orphaned agent group (on this host), commits what it
    wrote as WIP, marks the cycle failed / worker_lost (or timed_out / deadline), releases the lock."""
    host = host or get_settings().hostname
    now = now or time.time()
    out: list[Reaped] = []
    beats = svc.state.workers()
    for record in svc.state.recent_cycles(None, scan):
        if not record.live:
            continue
        verdict = _verdict(record, host, now, svc, beats)
        if verdict is None:
            continue
        status, reason, why = verdict
        if fail(record.cycle_id, svc, why, status, reason) is not None:
            out.append(Reaped(record.cycle_id, reason))
    return out


def _verdict(
    record: CycleRecord, host: str, now: float, svc: Services, beats: list[WorkerBeat]
) -> tuple[Status, Reason, str] | None:
    deadline = record.ctx.deadline
    local = record.host == host
    if _running_here(record, host, now):
        return None
    stalled = _stalled(record, now, beats)
    if stalled:
        return Status.FAILED, Reason.WORKER_LOST, stalled
    if not local and record.host and record.ctx.worktree is not None and not svc.state.host_alive(record.host):
        return Status.FAILED, Reason.WORKER_LOST, f"host {record.host}, which holds the worktree, stopped its heartbeat"
    if local and record.runner and record.agent_pgid is not None and not identity_alive(record.runner):
        return Status.FAILED, Reason.WORKER_LOST, f"the worker process running the agent ({record.runner}) is gone"
    if deadline is not None and local and now > deadline + LOCAL_STUCK_S:
        return Status.TIMED_OUT, Reason.DEADLINE, "the cycle is past its deadline and nothing ended it"
    if deadline is not None and now > deadline + FOREIGN_STUCK_S:
        return Status.FAILED, Reason.WORKER_LOST, f"no word from host {record.host} long after the deadline"
    return None


def _running_here(record: CycleRecord, host: str, now: float) -> bool:
    """Whether the cycle's current stage is still being run by a live process on this host (the very one
    recorded when the stage started), and that stage's own hard limit has not passed yet."""
    stage = record.stage
    if stage is None or stage.host != host or not identity_alive(stage.runner):
        return False
    return now <= stage.started + stage_limit_s(record.ctx)


def stage_limit_s(ctx: CycleContext) -> int:
    """The hard time limit of the stage the cycle is in: its current step's, as `plan` compiles it; between
    or outside the steps (start, finish), finish's, the longer of the two."""
    if ctx.step is not None:
        try:
            steps = plan(config_of(ctx))
        except (ConfigError, KeyError):  # a config or an op this version no longer knows
            steps = []
        if ctx.step < len(steps):
            return steps[ctx.step].hard_s
    return FINISH_LIMIT_S + GRACE_S


def _stalled(record: CycleRecord, now: float, beats: list[WorkerBeat]) -> str | None:
    """Why a cycle between steps will never go on: its next step waits in a queue that no live worker
    consumes (the worker that would have taken it died, or no host has that agent), for longer than a
    heartbeat lasts. None when some live worker consumes it, or when no heartbeats are known to judge by."""
    ctx = record.ctx
    if ctx.waiting_on is None or ctx.waiting_since is None or not beats:
        return None
    if now - ctx.waiting_since < heartbeat_ttl_s(get_settings().heartbeat_s):
        return None
    if any(ctx.waiting_on in beat.queues for beat in beats):
        return None
    return f"no live worker consumes {ctx.waiting_on}, where its next step has waited since it was sent"


@dataclass
class WorktreeState:
    path: Path
    cycle_id: str
    status: str
    action: str  # removed, kept, would remove
    detail: str = ""


def gc_worktrees(svc: Services, dry_run: bool = False) -> list[WorktreeState]:
    """Every cycle worktree under the state dir: removed when its cycle ended and nothing would be lost."""
    root = svc.state_dir / "worktrees"
    out: list[WorktreeState] = []
    if not root.is_dir():
        return out
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        record = svc.state.get_cycle(path.name)
        status = record.status.value if record else "unknown"
        if record is not None and record.live:
            out.append(WorktreeState(path, path.name, status, "kept", "cycle still running"))
            continue
        remote, push = "origin", True
        if record is not None:
            try:
                cfg = config_of(record.ctx)
                remote, push = cfg.workspace.remote, cfg.permissions.push
            except ConfigError:  # a config this version no longer reads: keep the defaults
                pass
        checkout = worktree.Checkout.load(svc.state_dir, path.name)
        if checkout is None:
            # Without the guard's record its git metadata cannot be trusted: never run git there.
            out.append(WorktreeState(path, path.name, status, "kept", "no integrity record: check and remove by hand"))
            continue
        blocker = worktree.removal_blocker(checkout, remote, push)
        if blocker is not None:
            out.append(WorktreeState(path, path.name, status, "kept", blocker))
        elif dry_run:
            out.append(WorktreeState(path, path.name, status, "would remove"))
        else:
            blocker = worktree.remove_if_safe(checkout, svc.state_dir, remote, push)
            out.append(WorktreeState(path, path.name, status, "kept" if blocker else "removed", blocker or ""))
    return out


def heartbeat_ttl_s(every_s: float) -> int:
    """How long a heartbeat stays: four and a half beats, so that a slow beat or a quick restart is not a
    death, and a dead host is noticed well within 90 s at the default 10 s."""
    return max(2, round(every_s * 4.5))


def rescue_worktrees(svc: Services, host: str | None = None) -> list[str]:
    """At worker start: the worktrees on this host whose cycle was ended elsewhere (its host died, another
    host's janitor closed it without reaching its files) get their work committed (`WIP:`) and pushed as
    `permissions` allow, then removed once nothing would be lost. Returns the cycle ids it saved."""
    from orchestration.lifecycle import save_work
    from orchestration.pipeline.ops._work import decision_of, publish_work

    host = host or get_settings().hostname
    saved = []
    root = svc.state_dir / "worktrees"
    for path in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        record = svc.state.get_cycle(path.name)
        if record is None or record.live or record.host not in (host, None):
            continue
        checkout = worktree.Checkout.load(svc.state_dir, path.name)
        ctx = record.ctx
        if checkout is None or ctx.branch is None or ctx.base_sha is None:
            continue
        try:
            cfg = config_of(ctx)
        except ConfigError:
            continue
        decision = decision_of(ctx, cfg)
        status = ctx.status.value if ctx.status.ended else "failed"
        commit = save_work(checkout, decision, ctx.cycle_id, status)
        result = publish_work(ctx, cfg, checkout, decision, lambda kind, data: None, propose=False)
        if commit or result.pushed:
            saved.append(ctx.cycle_id)
            log.warning("cycle %s: saved what its dead worker left (%s)", ctx.cycle_id, result.reason or "pushed")
        worktree.remove_if_safe(checkout, svc.state_dir, cfg.workspace.remote, cfg.permissions.push)
    return saved
