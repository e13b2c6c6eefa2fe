"""Runs one agent CLI on a prompt in a worktree and returns the report's agent result."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from orchestration.agents.base import BASE_ENV, Emit, EnvGrant, RunTally, clip
from orchestration.agents.process import AFTER_FINAL_GRACE_S, ProcessOutcome, RunAs, supervise
from orchestration.agents.registry import AGENTS, RunContext
from orchestration.agents.relay import Outbox, Poller
from orchestration.config import ENV_REF, WorkspaceConfig, expand_env, never_for_agents
from orchestration.models import AgentResult, AgentTokens, StopReason
from orchestration.redact import Redactor


def minimal_env(source: Mapping[str, str], also: EnvGrant | None = None) -> dict[str, str]:
    """The worker's variables in the base list (and in `also`), never a credential or orchestrate setting."""
    return {
        k: v
        for k, v in source.items()
        if (BASE_ENV.grants(k) or (also is not None and also.grants(k))) and not never_for_agents(k)
    }


def as_user(env: dict[str, str], run_as: RunAs) -> None:
    """The environment of a process run as `run_as`: its own home and name, not the worker's temp dir."""
    env.update(HOME=run_as.home, USER=run_as.name, LOGNAME=run_as.name)
    env.pop("TMPDIR", None)


def agent_env(
    cfg: WorkspaceConfig, agent: str, environ: Mapping[str, str] | None = None, run_as: RunAs | None = None
) -> dict[str, str]:
    """The least environment the agent needs: the base list, its own CLI's list, and what the config grants
    (`agents.<name>.env`, whose `${env.NAME}` reads only names in `env_allow`). Never the worker's GitHub
    token, ORCH_* settings or broker and Redis URLs, whatever a config says."""
    source = os.environ if environ is None else environ
    env = minimal_env(source, AGENTS[agent].env)
    for key, value in cfg.agents.env_for(agent).items():
        if never_for_agents(key) or any(never_for_agents(ref) for ref in ENV_REF.findall(value)):
            continue  # refused when the config was validated; never reached here either
        env[key] = expand_env(value, cfg.env_allow, dict(source))
    if run_as is not None:
        as_user(env, run_as)
        # The admin dir stays the worker's: let the agent's own read-only git calls look at its work tree.
        env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="safe.directory", GIT_CONFIG_VALUE_0="*")
    return env


def resolve_command(command: str) -> str | None:
    if os.path.isabs(command):
        return command if os.access(command, os.X_OK) else None
    return shutil.which(command)


def agents_on_path(cfg: WorkspaceConfig) -> Callable[[str], bool]:
    """Whether an agent's command is found here: what a decision made in this process may choose."""
    return lambda agent: resolve_command(cfg.agents.command_for(agent)) is not None


def run_agent(
    *,
    agent: str,
    cfg: WorkspaceConfig,
    worktree: Path,
    prompt: str,
    deadline: float,
    emit: Emit,
    should_cancel: Callable[[], bool],
    on_started: Callable[[int], None] | None = None,
    log_dir: Path | None = None,
    after_final_grace_s: float = AFTER_FINAL_GRACE_S,
    run_as: RunAs | None = None,
) -> AgentResult:
    """Runs the registered agent `agent`. Never raises for anything the agent does; the result says what
    happened."""
    spec = AGENTS[agent]
    env = agent_env(cfg, agent, run_as=run_as)
    # The worker's own secrets and whatever the config gave the agent; one stream per run, so that a
    # secret split over two events is masked in both.
    redact = Redactor({**os.environ, **env})
    stream = redact.stream()

    command = resolve_command(cfg.agents.command_for(agent))
    if command is None:
        msg = f"{cfg.agents.command_for(agent)!r} not found on PATH"
        emit(
            "agent.finished",
            stream({"agent": agent, "status": "failed", "stop_reason": StopReason.AGENT_NOT_FOUND.value, "error": msg}),
        )
        return AgentResult(status="failed", stop_reason=StopReason.AGENT_NOT_FOUND, summary=msg)
    # The loop that watches the agent never waits on the hub: events leave in order from the outbox's
    # thread (kept while Redis is away), and cancel requests are read on a thread of their own.
    outbox = Outbox(emit)
    cancel = Poller(should_cancel, every_s=1.0)

    def safe_emit(kind: str, data: dict[str, Any]) -> None:
        outbox.put(kind, stream(data))

    try:
        tally = RunTally()
        parser = spec.stream(RunContext(cfg=cfg, worktree=worktree, env=env, emit=safe_emit, tally=tally))
        argv = spec.argv(command, cfg, prompt, worktree)
        started = time.monotonic()

        def tick() -> None:
            safe_emit(
                "agent.heartbeat",
                {
                    "elapsed_s": round(time.monotonic() - started, 1),
                    "events": tally.events,
                    "cost_usd": round(parser.current_cost(), 6),
                },
            )

        stderr_path = (log_dir / f"{agent}.stderr.log") if log_dir else None
        if log_dir:
            log_dir.mkdir(parents=True, exist_ok=True)
        outcome = supervise(
            argv,
            cwd=worktree,
            env=env,
            deadline=deadline,
            idle_timeout_s=cfg.budget.idle_timeout_s,
            on_line=parser.feed,
            should_cancel=cancel.value,
            cancel_poll_s=0.25,  # a cheap read of what the poller last heard
            on_started=on_started,
            on_tick=tick,
            poll=parser.poll,
            stderr_path=stderr_path,
            after_final_grace_s=after_final_grace_s,
            run_as=run_as,
        )
        result = to_result(outcome, tally, parser.current_cost())
        result.summary = redact(result.summary)
        safe_emit(
            "agent.finished",
            {
                "agent": agent,
                "status": result.status,
                "exit_code": result.exit_code,
                "stop_reason": result.stop_reason,
                "num_turns": result.num_turns,
                "cost_usd": result.cost_usd,
                "session_id": result.session_id,
                "bad_lines": tally.bad_lines,
                "stderr": clip(redact(outcome.stderr_tail), 1000) if result.status != "succeeded" else "",
            },
        )
        return result
    finally:
        cancel.stop()
        outbox.close(OUTBOX_DRAIN_S)


# How long a finished run waits for the hub to take its last events (a Redis restart takes seconds).
OUTBOX_DRAIN_S = 120.0


def to_result(outcome: ProcessOutcome, tally: RunTally, cost: float) -> AgentResult:
    stop: str | None = outcome.stop_reason
    status: Literal["succeeded", "failed", "timed_out", "cancelled"]
    if tally.success is True:
        # The final event is the authority: also when the exit code disagrees, or when a limit hit while
        # the agent lingered after its last word.
        status = "succeeded"
    elif stop is StopReason.DEADLINE:
        status = "timed_out"
    elif stop is StopReason.CANCELLED:
        status = "cancelled"
    else:
        status = "failed"
        # It ended by itself without success: the stream's own error, or what was missing from it.
        stop = stop or tally.error or ("no_result_event" if not tally.final_seen else "agent_error")
    summary = tally.summary or tally.last_text
    if outcome.spawn_error:
        summary = outcome.spawn_error
    elif status == "failed" and not summary:
        summary = clip(outcome.stderr_tail.strip()[-500:], 500)
    return AgentResult(
        status=status,
        exit_code=outcome.exit_code,
        session_id=tally.session_id,
        num_turns=tally.num_turns,
        cost_usd=round(cost, 6),
        tokens=AgentTokens(input=tally.input_tokens, output=tally.output_tokens, cached=tally.cached_tokens),
        files_changed=sorted(tally.files),
        summary=clip(summary, 1000),
        stop_reason=stop,
        events=tally.events,
        worked=bool(
            tally.files or tally.tool_calls or tally.input_tokens or tally.output_tokens or tally.cached_tokens
        ),
    )
