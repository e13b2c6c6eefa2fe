"""The janitor's guards, on the real states (fakeredis and files) and real processes: a stage still run by a
live process here is not reaped past the deadline, a closed record is never reopened, and a recorded agent
group is only signalled while its very leader lives."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from orchestration import cycle, lifecycle
from orchestration.agents.process import group_alive, identity_alive, process_identity
from orchestration.config import parse_config
from orchestration.cycle import FINISH_LIMIT_S
from orchestration.janitor import LOCAL_STUCK_S, reap, stage_limit_s
from orchestration.lifecycle import GRACE_S, AlreadyHandled
from orchestration.models import CycleContext, Event, Reason, RunningStage, Status, StepStatus, iso, utcnow
from orchestration.services import Services
from orchestration.settings import get_settings
from orchestration.state import CycleClosed

PR_STEP = 3  # pr.create in the default pipeline: 300 s soft, 330 s hard


def here() -> str:
    return get_settings().hostname


def running(svc: Services, now: float, past_deadline_s: float, step: int | None = PR_STEP) -> CycleContext:
    """A cycle running on this host, `past_deadline_s` past its deadline, in step `step`."""
    cfg = parse_config({"workspace": {"repo": "/srv/repos/x"}})
    ctx = cycle.enqueue(svc, cfg)
    ctx.status, ctx.started_at = Status.RUNNING, iso(utcnow())
    ctx.deadline, ctx.step = now - past_deadline_s, step
    lifecycle.save(svc, ctx, host=here())
    return ctx


@pytest.fixture
def dead_identity() -> str:
    """The identity of a process that has since ended."""
    proc = subprocess.Popen(["sleep", "60"])
    identity = process_identity(proc.pid)
    proc.kill()
    proc.wait()
    assert not identity_alive(identity)
    return identity


@pytest.fixture
def group() -> Iterator[subprocess.Popen[bytes]]:
    """A real `sleep`, leader of its own process group, cleaned up whatever the test did to it."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def on_stage(svc: Services, ctx: CycleContext, runner: str, started: float) -> None:
    lifecycle.save(svc, ctx, stage=RunningStage(host=here(), runner=runner, started=started))


# -- a stage still running past the deadline ----------------------------------------------------------


def test_a_step_run_by_a_live_process_here_is_not_reaped_past_the_deadline(svc: Services) -> None:
    now = time.time()
    ctx = running(svc, now, past_deadline_s=LOCAL_STUCK_S + 60)
    on_stage(svc, ctx, process_identity(), started=now - 100)  # pr.create, begun just before the deadline
    assert reap(svc, host=here(), now=now) == []
    rec = svc.state.get_cycle(ctx.cycle_id)
    assert rec is not None and rec.live and rec.status is Status.RUNNING


def test_the_same_step_whose_runner_is_dead_is_reaped(svc: Services, dead_identity: str) -> None:
    now = time.time()
    ctx = running(svc, now, past_deadline_s=LOCAL_STUCK_S + 60)
    on_stage(svc, ctx, dead_identity, started=now - 100)
    assert [(r.cycle_id, r.reason) for r in reap(svc, host=here(), now=now)] == [(ctx.cycle_id, Reason.DEADLINE)]
    rec = svc.state.get_cycle(ctx.cycle_id)
    assert rec is not None and rec.status is Status.TIMED_OUT and rec.finished_at and rec.stage is None


def test_a_live_runner_past_its_steps_hard_limit_is_reaped(svc: Services) -> None:
    now = time.time()
    ctx = running(svc, now, past_deadline_s=LOCAL_STUCK_S + 400)
    assert stage_limit_s(ctx) == 300 + GRACE_S
    on_stage(svc, ctx, process_identity(), started=now - stage_limit_s(ctx) - 1)
    assert [r.reason for r in reap(svc, host=here(), now=now)] == [Reason.DEADLINE]


def test_finish_gets_its_own_limit_and_a_stage_elsewhere_is_not_judged_here(svc: Services) -> None:
    now = time.time()
    ctx = running(svc, now, past_deadline_s=LOCAL_STUCK_S + 60, step=None)
    assert stage_limit_s(ctx) == FINISH_LIMIT_S + GRACE_S
    on_stage(svc, ctx, process_identity(), started=now - 200)  # finish, pushing the branch
    assert reap(svc, host=here(), now=now) == []
    # The same identity taken on another host says nothing about a process here.
    lifecycle.save(svc, ctx, stage=RunningStage(host="elsewhere", runner=process_identity(), started=now - 200))
    assert [r.reason for r in reap(svc, host=here(), now=now)] == [Reason.DEADLINE]


def test_stage_events_name_this_process_while_the_stage_works(svc: Services) -> None:
    ctx = running(svc, time.time(), past_deadline_s=-600)
    with lifecycle.stage_events(svc, ctx, "pr"):
        rec = svc.state.get_cycle(ctx.cycle_id)
        assert rec is not None and rec.stage is not None
        assert rec.stage.runner == process_identity() and rec.stage.host == here()
    rec = svc.state.get_cycle(ctx.cycle_id)
    assert rec is not None and rec.stage is None


# -- a closed record stays closed ---------------------------------------------------------------------


def test_a_running_context_saved_after_fail_leaves_the_record_closed(svc: Services) -> None:
    ctx = running(svc, time.time(), past_deadline_s=LOCAL_STUCK_S + 60)
    worker = ctx.model_copy(deep=True)  # what the worker still holds while its step runs
    stale = svc.state.get_cycle(ctx.cycle_id)  # a record read before the close
    assert lifecycle.fail(ctx.cycle_id, svc, "stuck", Status.TIMED_OUT, Reason.DEADLINE) is not None
    closed = svc.state.get_cycle(ctx.cycle_id)
    assert closed is not None and closed.finished_at and closed.report is not None

    with pytest.raises(AlreadyHandled):
        lifecycle.save(svc, worker)  # the step returned: the worker saves its running context
    with pytest.raises(AlreadyHandled):
        lifecycle.save(svc, worker, agent_pgid=None, agent_identity=None)
    assert stale is not None and stale.finished_at is None
    with pytest.raises(CycleClosed):  # the same save racing the close, at the state
        svc.state.save_cycle(stale)
    worker.status = Status.FAILED  # an ended context changes nothing either, quietly
    lifecycle.save(svc, worker)

    after = svc.state.get_cycle(ctx.cycle_id)
    assert after is not None and not after.live
    assert after.status is Status.TIMED_OUT and after.ctx.reason is Reason.DEADLINE
    assert after.finished_at == closed.finished_at and after.report == closed.report
    assert svc.state.is_finished(ctx.cycle_id)


def test_run_local_ends_with_the_report_of_a_cycle_closed_meanwhile(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def start_then_closed_elsewhere(ctx: CycleContext, svc: Services) -> CycleContext:
        ctx.status, ctx.deadline = Status.RUNNING, time.time() + 600
        lifecycle.save(svc, ctx, host=here())
        lifecycle.fail(ctx.cycle_id, svc, "closed by the janitor", Status.TIMED_OUT, Reason.DEADLINE)
        return ctx  # this process still holds it running

    monkeypatch.setattr(cycle, "start", start_then_closed_elsewhere)
    ctx = cycle.enqueue(svc, parse_config({"workspace": {"repo": "/srv/repos/x"}}), trigger="local")
    report = cycle.run_local(ctx, svc)
    assert report.status is Status.TIMED_OUT and report.reason is Reason.DEADLINE
    rec = svc.state.get_cycle(ctx.cycle_id)
    assert rec is not None and rec.status is Status.TIMED_OUT and rec.finished_at == report.finished_at


# -- the agent group is signalled only while its leader lives -----------------------------------------


def orphan(svc: Services, leader: subprocess.Popen[bytes], identity: str | None, dead_runner: str) -> str:
    """A cycle whose worker died with its agent (the group of `leader`) still running here."""
    ctx = running(svc, time.time(), past_deadline_s=-600, step=2)
    lifecycle.save(svc, ctx, agent_pgid=leader.pid, agent_identity=identity, runner=dead_runner)
    return ctx.cycle_id


def test_the_janitor_kills_the_group_whose_leader_is_the_recorded_process(
    svc: Services, group: subprocess.Popen[bytes], dead_identity: str
) -> None:
    cycle_id = orphan(svc, group, process_identity(group.pid), dead_identity)
    assert [r.reason for r in reap(svc, host=here())] == [Reason.WORKER_LOST]
    assert group.wait(timeout=10) == -signal.SIGTERM
    assert not group_alive(group.pid)
    rec = svc.state.get_cycle(cycle_id)
    assert rec is not None and rec.status is Status.FAILED and rec.agent_pgid is None and rec.agent_identity is None


def test_a_group_number_reused_by_another_process_is_left_alone(
    svc: Services, group: subprocess.Popen[bytes], dead_identity: str
) -> None:
    pid, _, ticks = process_identity(group.pid).partition(":")
    earlier = f"{pid}:{int(ticks) - 1}"  # the recorded leader started earlier: this group only reused its number
    cycle_id = orphan(svc, group, earlier, dead_identity)
    assert [r.reason for r in reap(svc, host=here())] == [Reason.WORKER_LOST]  # the cycle still ends
    time.sleep(0.2)
    assert group.poll() is None and group_alive(group.pid)
    rec = svc.state.get_cycle(cycle_id)
    assert rec is not None and rec.finished_at


def test_a_record_without_the_leaders_identity_falls_back_to_the_group_check(
    svc: Services, group: subprocess.Popen[bytes], dead_identity: str
) -> None:
    orphan(svc, group, None, dead_identity)  # written before the identity was recorded
    assert reap(svc, host=here())
    assert group.wait(timeout=10) == -signal.SIGTERM


def test_a_second_delivery_of_a_step_that_already_ran_is_dropped(svc: Services) -> None:
    """A step message given back after its acknowledgement was lost arrives again: the step does not run
    twice; the record and the events stay as the first run left them."""
    cfg = parse_config({"workspace": {"repo": "/srv/repos/x"}, "decision": {"backend": "heuristic"}})
    ctx = cycle.enqueue(svc, cfg)
    ctx.status, ctx.started_at, ctx.deadline = Status.RUNNING, iso(utcnow()), time.time() + 600
    lifecycle.save(svc, ctx)
    stale = ctx.model_copy(deep=True)  # what the message carried
    ctx.steps[0].status = StepStatus.SUCCEEDED  # the first delivery ran it
    lifecycle.save(svc, ctx)
    with pytest.raises(AlreadyHandled, match="step 0 already ran"):
        cycle.run_step(stale, svc, 0)
    record = svc.state.get_cycle(ctx.cycle_id)
    assert record is not None and record.ctx.steps[0].status == "succeeded" and record.ctx.step is None


def test_a_start_that_fails_after_taking_the_lock_leaves_it_to_the_error_path(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token is in the record as soon as the lock is taken: whatever fails next in start, the error path
    (which only has the record) releases the lock, and the workspace's next cycle can start."""
    cfg = parse_config({"workspace": {"repo": "/srv/repos/x"}})
    ctx = cycle.enqueue(svc, cfg)

    def broken(*_: object) -> float:
        raise RuntimeError("spend store unreadable")

    monkeypatch.setattr(svc.state, "get_spend", broken)
    with pytest.raises(RuntimeError):
        cycle.start(ctx, svc)
    assert svc.state.acquire_lock(cfg.id, 60) is None  # held by the failed start
    report = lifecycle.fail(ctx.cycle_id, svc, "RuntimeError: spend store unreadable")
    assert report is not None and report.status is Status.FAILED
    assert svc.state.acquire_lock(cfg.id, 60) is not None


def test_the_lock_is_released_only_after_cycle_finished(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """Watchers take `cycle.finished` as the end of the cycle: until it is out, the workspace stays locked, so
    that no one ever sees two of its cycles running; right after it, the next cycle can start."""
    cfg = parse_config({"workspace": {"repo": "/srv/repos/x"}})
    ctx = cycle.start(cycle.enqueue(svc, cfg), svc)
    assert ctx.lock_token and ctx.status is Status.RUNNING
    held_at_finished: list[bool] = []
    emit = svc.hub.emit

    def watching(cycle_id: str, workspace: str, stage: str, kind: str, data: dict[str, Any] | None = None) -> Event:
        if kind == "cycle.finished":
            token = svc.state.acquire_lock(workspace, 60)
            if token is not None:  # free already: give it back, the cycle's own release must not be hidden
                svc.state.release_lock(workspace, token)
            held_at_finished.append(token is None)
        return emit(cycle_id, workspace, stage, kind, data)

    monkeypatch.setattr(svc.hub, "emit", watching)
    report = cycle.finish(ctx, svc)
    assert report.status is Status.SUCCEEDED
    assert held_at_finished == [True]
    assert svc.state.acquire_lock(cfg.id, 60) is not None
