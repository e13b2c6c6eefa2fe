"""Stage tasks and the canvas builder. Thin: every stage is a call into `orchestration.cycle`."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from billiard.exceptions import WorkerLostError
from celery import Task, chain, signals
from celery.canvas import Signature
from celery.exceptions import Ignore, SoftTimeLimitExceeded, TimeLimitExceeded

from orchestration import cycle, lifecycle
from orchestration.config import WorkspaceConfig, load_config
from orchestration.deployment import config_problems
from orchestration.hub import RedisHub
from orchestration.lifecycle import AlreadyHandled
from orchestration.models import CycleContext, Reason, Status, WorkerBeat
from orchestration.pipeline.registry import OPS
from orchestration.services import WORKER_PATIENCE_S, Services, redis_client
from orchestration.settings import get_settings
from orchestration.state import RedisState
from tasks.app import app

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def services() -> Services:
    """One Redis pool per worker process."""
    s = get_settings()
    client = redis_client(s.redis_url, WORKER_PATIENCE_S)  # a Redis restart mid-step is waited out
    return Services(state=RedisState(client, s.key_prefix), hub=RedisHub(client, s.key_prefix), state_dir=s.state_dir)


def _run_stage(stage: Callable[..., CycleContext], raw: dict[str, Any], **kw: Any) -> CycleContext:
    ctx = CycleContext.model_validate(raw)
    try:
        ctx = stage(ctx, services(), **kw)
    except AlreadyHandled as exc:
        # A duplicate delivery: stop this copy of the chain here, quietly; the owner carries on.
        log.info("cycle %s: %s; this delivery stops here", ctx.cycle_id, exc)
        raise Ignore() from exc
    except SoftTimeLimitExceeded:
        # The backstop fired: the stage's own cleanup ran as the exception unwound (agent group killed).
        # Mark the cycle timed out and let the chain go on, so publish saves the work and finish reports.
        log.warning("cycle %s: soft time limit in %s", ctx.cycle_id, stage.__name__)
        ctx = lifecycle.timed_out_by_backstop(ctx, services())
    return ctx


# A stage returns the whole cycle context for the next one: its log line ("... succeeded in 0.01s: {...}")
# shows only the start of it (Celery's default is 1 KB, masked for secrets at every step).
STAGE = {"bind": True, "resultrepr_maxsize": 200}


@app.task(name="orchestrate.start", **STAGE)
def start(self: Task, ctx: dict[str, Any]) -> dict[str, Any]:
    return _run_stage(cycle.start, ctx).model_dump(mode="json")


def _run_op(task: Task, ctx: dict[str, Any], step: int) -> dict[str, Any]:
    after = _run_stage(cycle.run_step, ctx, index=step)
    if after.handoff is not None:
        # The step runs again on another queue (the fallback agent's): this task is replaced by that one,
        # and the rest of the chain follows it.
        queue, after.handoff = after.handoff, None
        planned = cycle.plan(lifecycle.config_of(after))[step]
        again = task.s(after.model_dump(mode="json"), step=step)
        again.set(queue=queue, soft_time_limit=planned.soft_s, time_limit=planned.hard_s)
        raise task.replace(again)
    _route_next_step(task, after, step + 1)
    return after.model_dump(mode="json")


def _route_next_step(task: Task, ctx: CycleContext, index: int) -> None:
    """Sends the chain's next step (or `finish`) to the queue known only now: the host holding the cycle's
    worktree, or an agent.execute's agent.

    The remaining chain travels in the request (last element = next step) and Celery sends that very
    list on success, so setting the queue here routes it.
    """
    remaining = task.request.chain or []
    following = str(remaining[-1].get("task", "")) if remaining else ""
    if not (following.startswith(OP_PREFIX) or following == finish.name):
        return
    queue = cycle.next_queue(ctx, index)
    if queue is not None:
        remaining[-1].setdefault("options", {})["queue"] = queue


OP_PREFIX = "orchestrate.op."


def _op_task(op: str) -> Task:
    def run(self: Task, ctx: dict[str, Any], step: int) -> dict[str, Any]:
        return _run_op(self, ctx, step)

    run.__name__ = run.__qualname__ = "op_" + op.replace(".", "_")
    run.__doc__ = f"Pipeline step `{op}`."
    return app.task(name=OP_PREFIX + op, **STAGE)(run)


# One task per registered operation: `orchestrate.op.shell.run`, ...
OP_TASKS: dict[str, Task] = {op: _op_task(op) for op in OPS}


@app.task(name="orchestrate.finish", **STAGE)
def finish(self: Task, ctx: dict[str, Any]) -> dict[str, Any]:
    try:
        report = cycle.finish(CycleContext.model_validate(ctx), services())
    except AlreadyHandled as exc:
        raise Ignore() from exc
    return report.public()


@app.task(name="orchestrate.on_error")
def on_error(request: Any, exc: BaseException, traceback: Any) -> None:
    """Error callback of every stage: ends the cycle as failed and releases what it holds."""
    cycle_id = _cycle_id_of(request)
    if cycle_id is None:
        return
    status, reason = Status.FAILED, Reason.STAGE_ERROR
    if isinstance(exc, WorkerLostError):
        reason = Reason.WORKER_LOST
    elif isinstance(exc, TimeLimitExceeded):
        status, reason = Status.TIMED_OUT, Reason.DEADLINE
    try:
        lifecycle.fail(cycle_id, services(), f"{type(exc).__name__}: {exc}", status, reason)
    except Exception:
        log.exception("cycle %s: the error path itself failed", cycle_id)


def _cycle_id_of(request: Any) -> str | None:
    args = getattr(request, "args", None) or []
    if args and isinstance(args[0], dict) and isinstance(args[0].get("cycle_id"), str):
        return str(args[0]["cycle_id"])
    return None


@signals.task_revoked.connect
def _on_revoked(request: Any = None, terminated: bool = False, expired: bool = False, **_: Any) -> None:
    """Revoked or expired steps never call error callbacks: end their cycle here instead."""
    cycle_id = _cycle_id_of(request)
    if cycle_id is None or not str(getattr(request, "name", "") or getattr(request, "task", "")).startswith(
        "orchestrate."
    ):
        return
    reason = Reason.EXPIRED if expired else Reason.CANCELLED
    status = Status.FAILED if expired else Status.CANCELLED
    try:
        lifecycle.fail(cycle_id, services(), f"task {reason.value}", status, reason)
    except Exception:
        log.exception("cycle %s: cleanup after revoke failed", cycle_id)


def _janitor_pass() -> list[str]:
    """Ends the cycles whose worker died (reaping their agents), then gives the steps a dead worker had
    taken back to their queue: after the reaping, so that only cycles still live are resumed."""
    from orchestration.janitor import heartbeat_ttl_s, reap
    from tasks.broker import restore_orphans

    ended = reap(services())
    for r in ended:
        log.warning("janitor: cycle %s ended (%s)", r.cycle_id, r.reason)
    restore_orphans(services(), heartbeat_ttl_s(get_settings().heartbeat_s))
    return [f"{r.cycle_id}:{r.reason}" for r in ended]


@app.task(name="orchestrate.janitor")
def janitor() -> list[str]:
    """Periodic (beat): what each worker also does every few heartbeats (`_janitor_pass`)."""
    return _janitor_pass()


# A worker runs its janitor every this many heartbeats (30 s at the default 10 s).
JANITOR_EVERY_BEATS = 3


@signals.worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    """In the background (start-up goes on): first clean up after the worker that died here (end its cycles,
    save what their worktrees hold), then keep saying this host is alive and, every few beats, end the
    cycles of hosts that went silent."""
    import threading

    settings = get_settings()
    try:
        queues = sorted(q.name for q in sender.task_consumer.queues)
    except Exception:  # what Celery's consumer looks like is not ours to rely on
        queues = []
    me = WorkerBeat(host=settings.hostname, node=str(getattr(sender, "hostname", "")), pid=os.getpid(), queues=queues)

    def run() -> None:
        from orchestration.janitor import heartbeat_ttl_s, rescue_worktrees
        from tasks.broker import held_tags

        ttl = heartbeat_ttl_s(settings.heartbeat_s)
        beats = 0
        while True:
            try:
                services().state.beat(me.model_copy(update={"at": time.time(), "held": held_tags()}), ttl)
                if beats == 0:
                    _janitor_pass()
                    for cycle_id in rescue_worktrees(services()):
                        log.warning("janitor: saved the work cycle %s left on this host", cycle_id)
                elif beats % JANITOR_EVERY_BEATS == 0:
                    _janitor_pass()
            except Exception:  # Redis away for a while: try again at the next beat
                log.exception("heartbeat or janitor failed")
            beats += 1
            time.sleep(settings.heartbeat_s)

    threading.Thread(target=run, name="orchestrate-heartbeat", daemon=True).start()


# -- canvas ---------------------------------------------------------------------------------------


def build_canvas(
    ctx: CycleContext, cfg: WorkspaceConfig, expires_s: float | None = None, countdown: float = 0.0
) -> Signature:
    """start → one task per pipeline step → finish, each with its own queue and time limits (options given
    to the chain's apply_async would reach only its first task), and the error path on every one."""
    errback = on_error.s()
    grace = lifecycle.GRACE_S
    sigs = [
        start.si(ctx.model_dump(mode="json")).set(
            queue=cycle.STAGE_QUEUE, soft_time_limit=cycle.START_LIMIT_S, time_limit=cycle.START_LIMIT_S + grace
        )
    ]
    if expires_s is not None:
        sigs[0].set(expires=expires_s)
    if countdown > 0:
        sigs[0].set(countdown=countdown)
    for planned in cycle.plan(cfg):
        sigs.append(
            OP_TASKS[planned.op]
            .s(step=planned.index)
            .set(queue=planned.queue, soft_time_limit=planned.soft_s, time_limit=planned.hard_s)
        )
    sigs.append(
        finish.s().set(
            queue=cycle.STAGE_QUEUE, soft_time_limit=cycle.FINISH_LIMIT_S, time_limit=cycle.FINISH_LIMIT_S + grace
        )
    )
    for sig in sigs:
        sig.link_error(errback)
    return chain(*sigs)


def send_cycle(ctx: CycleContext, cfg: WorkspaceConfig, expires_s: float | None = None, countdown: float = 0.0) -> str:
    result = build_canvas(ctx, cfg, expires_s, countdown).apply_async()
    return str(result.id)


def _scheduled(config_path: str, catch_up: bool) -> str | None:
    """A scheduled fire (or the minute's catch-up check) of one config: reads it fresh, and starts a cycle
    when `cycle.plan_fire` says so, after its jitter."""
    from datetime import UTC, datetime

    try:
        cfg = load_config(config_path)
    except Exception as exc:
        log.error("scheduled cycle not started: %s", exc)
        return None
    problems = config_problems(cfg, get_settings())
    if problems:
        log.error("scheduled cycle not started: %s: %s", config_path, "; ".join(problems))
        return None
    fire = cycle.plan_fire(cfg, services(), datetime.now(UTC), catch_up=catch_up)
    if not fire.start:
        (log.debug if catch_up else log.info)("%s: no cycle started: %s", cfg.id, fire.why)
        return None
    ctx = cycle.enqueue(services(), cfg, trigger="schedule", ignore_window=False, delay_s=fire.countdown)
    send_cycle(ctx, cfg, countdown=fire.countdown)
    log.info("%s: cycle %s started (%s, in %.0f s)", cfg.id, ctx.cycle_id, fire.why, fire.countdown)
    return ctx.cycle_id


@app.task(name="orchestrate.launch")
def launch(config_path: str, trigger: str = "schedule") -> str | None:
    """What beat fires for a config's cron."""
    return _scheduled(config_path, catch_up=False)


@app.task(name="orchestrate.catch_up")
def catch_up(config_path: str) -> str | None:
    """What beat sends every minute for a config with `on_missed: catch_up`."""
    return _scheduled(config_path, catch_up=True)
