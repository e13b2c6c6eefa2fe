"""`shell.run`: one program, as an argv list (never a shell string), in the cycle's worktree, under the same
isolation as the agents (the minimal environment, ORCH_AGENT_USER), its own timeout within the cycle's
deadline, and its whole process group killed on timeout or cancel. Needs `permissions.shell` (true, or a
list of program names: argv[0] must then be one of them, a bare name found on PATH) and `shell` in this
host's ORCH_ALLOW."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

from orchestration.agents.process import RunAs, process_identity, supervise
from orchestration.agents.runner import as_user, minimal_env
from orchestration.config import WorkspaceConfig, never_for_agents
from orchestration.lifecycle import end, save
from orchestration.models import Reason, Status, StepStatus, StopReason
from orchestration.pipeline.expr import ExprError, has_refs, refs
from orchestration.pipeline.ops._work import checkout_of, run_as
from orchestration.pipeline.registry import Args, Operation, StepDenied, StepFailed, StepRun, register
from orchestration.redact import Redactor, strip_control

TAIL_BYTES = 64 * 1024
DEFAULT_TIMEOUT_S = 600
ENV_KEY_RE = r"[A-Za-z_][A-Za-z0-9_]*"


def _arg(v: str) -> str:
    if "\0" in v:
        raise ValueError("a NUL byte cannot be passed to a program")
    return v


def _env_key(v: str) -> str:
    if not re.fullmatch(ENV_KEY_RE, v):
        raise ValueError("expected a variable name (letters, digits, '_')")
    if never_for_agents(v):
        raise ValueError(f"{v} is never passed to commands (worker credentials and orchestrate settings)")
    return v


def _cwd(v: str) -> str:
    if v.startswith("/") or any(p == ".." for p in v.replace("\\", "/").split("/")):
        raise ValueError("expected a directory inside the worktree, relative to it (no '..', not absolute)")
    return v


Arg = Annotated[str, AfterValidator(_arg)]


class ShellArgs(Args):
    command: list[Arg] = Field(min_length=1, description='the argv list, e.g. ["python3", "-m", "pytest", "-q"]')
    cwd: Annotated[str, AfterValidator(_cwd)] | None = Field(default=None, description="relative to the worktree")
    env: dict[Annotated[str, AfterValidator(_env_key)], Arg] = Field(
        default_factory=dict, description="added to the minimal environment"
    )
    timeout_s: int | None = Field(default=None, gt=0, description=f"default {DEFAULT_TIMEOUT_S}, within the cycle's")
    check: bool = Field(
        default=True, description="a non-zero exit (or the timeout) ends the cycle failed / step_failed"
    )


class ShellOutput(BaseModel):
    exit_code: int | None = None
    ok: bool = False
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0


def program(argv0: str) -> str:
    return os.path.basename(argv0)


def command_env(
    run_as_user: RunAs | None, extra: dict[str, str], environ: dict[str, str] | None = None
) -> dict[str, str]:
    """The agents' base environment (no credentials, no orchestrate settings) plus `extra`."""
    env = minimal_env(os.environ if environ is None else environ)
    if run_as_user is not None:
        as_user(env, run_as_user)
    env.update(extra)
    return env


def tail(path: Path, limit: int = TAIL_BYTES) -> str:
    """The last `limit` bytes of a file, as text (a split character at the cut is replaced)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def credential_refs(with_: dict[str, Any]) -> list[tuple[str, str]]:
    """(argument path, NAME) of each `${env.NAME}` naming a variable never passed to commands (the worker's
    credentials, orchestrate settings), even when listed in env_allow: a command runs code the agent wrote."""
    try:
        return [
            (path, ref.path[0])
            for path, ref in refs(with_)
            if ref.root == "env" and len(ref.path) == 1 and never_for_agents(ref.path[0])
        ]
    except ExprError:
        return []


def _never_passed(name: str) -> str:
    return f"${{env.{name}}}: {name} is never passed to commands (worker credentials and orchestrate settings)"


@register
class Shell(Operation[ShellArgs, ShellOutput]):
    name = "shell.run"
    stage = "shell"
    summary = "run a program (argv list) in the worktree: tests, linters, formatters"
    Args = ShellArgs
    Output = ShellOutput
    worktree = True

    def check(self, args: dict[str, Any], before: list[str], cfg: WorkspaceConfig | None) -> list[tuple[str, str]]:
        return [(path, _never_passed(name)) for path, name in credential_refs(args)]

    def needs(self, args: dict[str, Any], cfg: WorkspaceConfig, policy: Any) -> list[tuple[str, str]]:
        problems = []
        grant = cfg.permissions.shell
        command = args.get("command")
        argv0 = command[0] if isinstance(command, list) and command and isinstance(command[0], str) else None
        if grant is False or grant == []:
            problems.append(
                ("", "needs permissions.shell (true, or a list of allowed programs); the config grants none")
            )
        elif isinstance(grant, list) and argv0 is not None and not has_refs(argv0):
            if "/" in argv0:
                # A path could name a program the agent wrote (`./python3`): a list grants programs on PATH.
                problems.append(("command", f"{argv0!r} is a path: permissions.shell {grant} grants programs by name"))
            elif argv0 not in grant:
                problems.append(("command", f"program {argv0!r} is not in permissions.shell {grant}"))
        if policy is not None and not policy.shell:
            problems.append(("", 'this host does not allow shell.run (ORCH_ALLOW lacks "shell")'))
        return problems

    def uses(self, args: dict[str, Any], cfg: WorkspaceConfig | None) -> list[str]:
        command = args.get("command")
        argv0 = command[0] if isinstance(command, list) and command and isinstance(command[0], str) else "?"
        return [f"shell: {program(argv0)}"]

    def limit_s(self, step: Any, cfg: WorkspaceConfig) -> int:
        own = (
            step.with_.get("timeout_s") if isinstance(step.with_.get("timeout_s"), int) else None
        ) or DEFAULT_TIMEOUT_S
        return max(1, min(step.timeout_s or own, cfg.budget.cycle_s)) + 15

    def run(self, step: StepRun, args: ShellArgs) -> ShellOutput:
        ctx, svc = step.ctx, step.svc
        leaks = credential_refs(step.step.with_)  # checked again here: a worker does not rely on the sender's check
        if leaks:
            raise StepDenied("; ".join(_never_passed(name) for _, name in leaks))
        checkout = checkout_of(step)
        root = checkout.path.resolve()
        cwd = (checkout.path / args.cwd).resolve() if args.cwd else root
        # The worktree is the agent's: a symlink it planted must not lead a command out of it.
        if cwd != root and root not in cwd.parents:
            raise StepDenied(f"cwd {args.cwd!r} resolves to {cwd}, outside the worktree")
        if not cwd.is_dir():
            raise StepFailed(f"cwd {args.cwd!r} is not a directory in the worktree")
        user = run_as()
        env = command_env(user, dict(args.env))
        deadline = min(step.deadline, time.time() + (args.timeout_s or DEFAULT_TIMEOUT_S))
        logs = svc.state_dir / "logs" / ctx.cycle_id
        logs.mkdir(parents=True, exist_ok=True)
        out_path, err_path = logs / f"step-{step.index}.stdout.log", logs / f"step-{step.index}.stderr.log"

        def started(pid: int) -> None:
            save(svc, ctx, agent_pgid=pid, agent_identity=process_identity(pid), runner=process_identity())

        t0 = time.monotonic()
        outcome = supervise(
            list(args.command),
            cwd=cwd,
            env=env,
            deadline=deadline,
            idle_timeout_s=float("inf"),
            on_line=lambda _line: None,  # type: ignore[arg-type,return-value]
            should_cancel=lambda: svc.state.is_cancelled(ctx.cycle_id),
            on_started=started,
            stdout_path=out_path,
            stderr_path=err_path,
            run_as=user,
        )
        save(svc, ctx, agent_pgid=None, agent_identity=None)
        duration = round(time.monotonic() - t0, 3)
        redact = Redactor({**os.environ, **env})
        output = ShellOutput(
            exit_code=outcome.exit_code if outcome.stop_reason is None else None,
            ok=outcome.stop_reason is None and outcome.exit_code == 0,
            stdout=strip_control(redact(tail(out_path))),
            stderr=strip_control(redact(tail(err_path))),
            duration_s=duration,
        )
        shown = redact(" ".join(args.command))[:500]
        step.emit(
            "agent.command",
            {
                "command": shown,
                "exit_code": output.exit_code,
                "ok": output.ok,
                "duration_s": duration,
                "stop_reason": outcome.stop_reason,
            },
        )
        if outcome.stop_reason == StopReason.SPAWN_FAILED:
            output.stderr = redact(outcome.spawn_error or "")
            if args.check:
                raise StepFailed(f"cannot start {program(args.command[0])!r}: {output.stderr[:200]}", output)
        elif outcome.stop_reason == StopReason.CANCELLED:
            end(svc, ctx, self.stage, Status.CANCELLED, Reason.CANCELLED)
        elif outcome.stop_reason == StopReason.DEADLINE and ctx.deadline is not None and time.time() >= ctx.deadline:
            end(svc, ctx, self.stage, Status.TIMED_OUT, Reason.DEADLINE)
        elif not output.ok and args.check:
            why = f"timed out after {duration:.0f}s" if outcome.stop_reason else f"exit code {outcome.exit_code}"
            raise StepFailed(f"{program(args.command[0])} failed ({why}); stderr: {output.stderr[-300:]!r}", output)
        if not output.ok:
            ctx.steps[step.index].status = StepStatus.FAILED
            ctx.steps[step.index].reason = "timeout" if outcome.stop_reason else f"exit {outcome.exit_code}"
        return output
