"""Cleanup after what the normal path cannot clean: a worker killed mid-run, a cycle stuck past its budget,
and worktrees left behind. Runs when a worker starts, periodically from beat, and as `orchestrate gc`."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.agents import worktree as wt
from orchestration.agents.process import identity_alive
from orchestration.config import parse_config
from orchestration.cycle import GRACE_S, Services, fail_cycle
from orchestration.models import Reason, Status

# A cycle this far past its deadline on another host is taken as lost (its host or worker is gone).
FOREIGN_STUCK_S = 3600
LIVE = (Status.QUEUED.value, Status.RUNNING.value)


@dataclass
class Reaped:
    cycle_id: str
    reason: str


def reap(svc: Services, host: str | None = None, now: float | None = None, scan: int = 500) -> list[Reaped]:
    """Ends the cycles whose runner is gone: kills the orphaned agent group (on this host), commits what it
    wrote as WIP, marks the cycle failed / worker_lost (or timed_out / deadline), releases the lock."""
    host = host or socket.gethostname()
    now = now or time.time()
    out: list[Reaped] = []
    for rec in svc.state.recent_cycles(None, scan):
        if rec.get("finished_at") or rec.get("status") not in LIVE:
            continue
        verdict = _verdict(rec, host, now)
        if verdict is None:
            continue
        status, reason, why = verdict
        if fail_cycle(str(rec.get("cycle_id")), svc, why, status, reason) is not None:
            out.append(Reaped(str(rec.get("cycle_id")), reason))
    return out


def _verdict(rec: dict[str, Any], host: str, now: float) -> tuple[Status, str, str] | None:
    deadline = rec.get("deadline")
    overdue = isinstance(deadline, int | float) and now > deadline + 3 * GRACE_S
    runner = rec.get("runner")
    local_agent = rec.get("host") == host and isinstance(runner, str) and rec.get("agent_pgid") is not None
    if local_agent and not identity_alive(str(runner)):
        return Status.FAILED, Reason.WORKER_LOST, f"the worker process running the agent ({runner}) is gone"
    if rec.get("host") == host and overdue:
        return Status.TIMED_OUT, Reason.DEADLINE, "the cycle is past its deadline and nothing ended it"
    if isinstance(deadline, int | float) and now > deadline + FOREIGN_STUCK_S:
        return Status.FAILED, Reason.WORKER_LOST, f"no word from host {rec.get('host')} long after the deadline"
    return None


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
        rec = svc.state.get_cycle(path.name) or {}
        status = str(rec.get("status") or "unknown")
        if status in LIVE and not rec.get("finished_at"):
            out.append(WorktreeState(path, path.name, status, "kept", "cycle still running"))
            continue
        remote, push = "origin", True
        ctx = rec.get("ctx")
        if isinstance(ctx, dict) and isinstance(ctx.get("config"), dict):
            try:
                cfg = parse_config(ctx["config"])
                remote, push = cfg.workspace.remote, cfg.permissions.push
            except Exception:  # an old record: keep the defaults
                pass
        checkout = wt.Checkout.load(svc.state_dir, path.name)
        if checkout is None:
            # Without the guard's record its git metadata cannot be trusted: never run git there.
            out.append(WorktreeState(path, path.name, status, "kept", "no integrity record: check and remove by hand"))
            continue
        blocker = wt.removal_blocker(checkout, remote, push)
        if blocker is not None:
            out.append(WorktreeState(path, path.name, status, "kept", blocker))
        elif dry_run:
            out.append(WorktreeState(path, path.name, status, "would remove"))
        else:
            blocker = wt.remove_if_safe(checkout, svc.state_dir, remote, push)
            out.append(WorktreeState(path, path.name, status, "kept" if blocker else "removed", blocker or ""))
    return out
