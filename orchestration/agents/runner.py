"""Runs one agent CLI on a prompt in a worktree and returns the report's agent result."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestration.agents import claude, codex
from orchestration.agents.base import Emit, RunTally, clip
from orchestration.agents.process import AFTER_FINAL_GRACE_S, ProcessOutcome, supervise
from orchestration.config import WorkspaceConfig, expand_env
from orchestration.models import AgentResult, AgentTokens

SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.I)


class Redactor:
    """Removes the values of secret-looking environment variables from anything we publish."""

    def __init__(self, env: dict[str, str]) -> None:
        values = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= 8}
        self.pattern = (
            re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))) if values else None
        )

    def __call__(self, value: Any) -> Any:
        if self.pattern is None:
            return value
        if isinstance(value, str):
            return self.pattern.sub("***", value)
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        return value


def agent_env(cfg: WorkspaceConfig, agent: str) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in cfg.agents.env_for(agent).items():
        env[key] = expand_env(value, cfg.env_allow, dict(os.environ))
    return env


def resolve_command(command: str) -> str | None:
    if os.path.isabs(command):
        return command if os.access(command, os.X_OK) else None
    return shutil.which(command)


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
) -> AgentResult:
    """Never raises for anything the agent does; the result says what happened."""
    env = agent_env(cfg, agent)
    redact = Redactor(env)

    def safe_emit(kind: str, data: dict[str, Any]) -> None:
        emit(kind, redact(data))

    command = resolve_command(cfg.agents.command_for(agent))
    if command is None:
        msg = f"{cfg.agents.command_for(agent)!r} not found on PATH"
        safe_emit(
            "agent.finished",
            {"agent": agent, "status": "failed", "stop_reason": "agent_not_found", "error": msg},
        )
        return AgentResult(status="failed", stop_reason="agent_not_found", summary=msg)
    tally = RunTally()
    parser: claude.ClaudeStream | codex.CodexStream
    poll = None
    if agent == "codex":
        parser = codex.CodexStream(
            safe_emit,
            tally,
            worktree,
            cfg.budget.max_cost_usd,
            cfg.budget.prices,
            codex.codex_home(env),
            cfg.agents.codex.model,
        )
        argv = codex.build_argv(command, cfg, prompt, worktree)
        poll = parser.poll
    else:
        parser = claude.ClaudeStream(safe_emit, tally, worktree, cfg.budget.max_cost_usd, cfg.budget.prices)
        argv = claude.build_argv(command, cfg, prompt)
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
        should_cancel=should_cancel,
        on_started=on_started,
        on_tick=tick,
        poll=poll,
        stderr_path=stderr_path,
        after_final_grace_s=after_final_grace_s,
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


def to_result(outcome: ProcessOutcome, tally: RunTally, cost: float) -> AgentResult:
    stop = outcome.stop_reason
    status: str
    if tally.success is True:
        # The final event is the authority: also when the exit code disagrees, or when a limit hit while
        # the agent lingered after its last word.
        status = "succeeded"
    elif stop == "deadline":
        status = "timed_out"
    elif stop == "cancelled":
        status = "cancelled"
    elif stop in ("idle_timeout", "cost_limit", "spawn_failed"):
        status = "failed"
    else:
        status = "failed"
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
