"""The `orchestrate` command. The one module of the domain that may import `tasks` (lazily, to talk to Celery)."""

# No `from __future__ import annotations` in this module: typer reads every command's signature at each start,
# and evaluating their string annotations took longer than building and parsing the whole command line.
# Names only imported for type checking are quoted where they appear.
import contextlib
import functools
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import orjson
import typer
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestration.control import stage_of
from orchestration.redact import default_redactor, redact_model, strip_control
from orchestration.settings import get_settings, redact_url

# Start-up stays fast (`--help`, `status`): Redis, Celery, the cycle machinery and the config models are
# imported by the commands that use them.
if TYPE_CHECKING:
    import redis

    from orchestration.config import WorkspaceConfig
    from orchestration.models import Event
    from orchestration.services import Services

app = typer.Typer(
    name="orchestrate",
    help="Scheduled, budgeted coding-agent cycles on Celery and Redis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Markup off everywhere: configs, paths and task titles are printed verbatim ("[/api]" is text, not a tag).
out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


def _tagged(tag: str, style: str, text: str) -> Text:
    return Text.assemble((tag, style), " ", text)


EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


class Fatal(Exception):
    """Ends the command with a one-line message and an exit code, never a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def _die(message: str, code: int = EXIT_FAILED) -> NoReturn:
    raise Fatal(message, code)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """While a command follows events or refreshes a table until stopped: Ctrl-C (SIGINT) raises
    KeyboardInterrupt even when this process inherited SIGINT as ignored (a background job of a
    non-interactive shell starts that way, and Python then never raises it), and SIGTERM ends it the same
    way. The previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(sig, handler)


def _load(path: Path) -> "WorkspaceConfig":
    from orchestration.config import ConfigError, load_config

    try:
        cfg = load_config(path)
    except ConfigError as exc:
        for line in exc.errors:
            err.print(_tagged("invalid", "red", f"{exc.source}: {line}"))
        _die(f"{path}: invalid config", EXIT_INVALID)
    problems = _config_problems(cfg)
    if problems:
        for p in problems:
            err.print(_tagged("invalid", "red", f"{path}: {p}"))
        _die(f"{path}: invalid config", EXIT_INVALID)
    from orchestration.deployment import config_warnings

    for warning in config_warnings(cfg, get_settings()):
        err.print(_tagged("warning", "yellow", f"{path}: {warning}"))
    return cfg


def _config_problems(cfg: "WorkspaceConfig") -> list[str]:
    """What makes a valid file unusable on this host (deployment settings and ORCH_ALLOW)."""
    from orchestration.control import config_problems_here

    return config_problems_here(cfg, get_settings())


def _redis_services() -> "tuple[Services, redis.Redis]":
    import redis

    from orchestration.hub import RedisHub
    from orchestration.services import CLI_PATIENCE_S, Services, patience, redis_client
    from orchestration.state import RedisState

    s = get_settings()
    client = redis_client(s.redis_url, patience_s=0)  # a Redis that is not there is said at once
    try:
        client.ping()
    except redis.RedisError as exc:
        _die(
            f"cannot reach Redis at {redact_url(s.redis_url)} ({exc}). Start redis-server, set ORCH_REDIS_URL, "
            "or use `orchestrate run --local`."
        )
    client.set_retry(patience(CLI_PATIENCE_S))  # then a restart while following a cycle is ridden out
    svc = Services(state=RedisState(client, s.key_prefix), hub=RedisHub(client, s.key_prefix), state_dir=s.state_dir)
    return svc, client


def _local_services(printer: Any = None) -> "Services":
    from orchestration.hub import LocalHub
    from orchestration.services import Services
    from orchestration.state import LocalState

    root = get_settings().state_dir / "local"
    return Services(
        state=LocalState(root),
        hub=LocalHub(root / "events", printer),
        state_dir=get_settings().state_dir,
    )


# -- printing --------------------------------------------------------------------------------------


def _untrusted(value: Any) -> Any:
    """Events, reports and records are untrusted (agent output, or anyone who can write to Redis): secrets
    masked, and no escape sequence or control character but newline and tab left in any string."""
    return _strip_all(default_redactor()(value))


def _strip_all(value: Any) -> Any:
    if isinstance(value, str):
        return strip_control(value)
    if isinstance(value, dict):
        return {_strip_all(k): _strip_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strip_all(v) for v in value]
    return value


def _cell(value: Any) -> str:
    """One line of untrusted text: a newline in an event must not print as a line of its own."""
    return " ".join(strip_control(default_redactor().text(str(value))).split())


def event_line(ev: "Event") -> str:
    # Masked whole, before anything is cut to length: a clipped secret would no longer match.
    d = {k: _cell(v) if isinstance(v, str) else _untrusted(v) for k, v in ev.data.items()}
    detail = ""
    if ev.kind == "agent.message":
        detail = str(d.get("text", "")).replace("\n", " ")[:160]
    elif ev.kind in ("agent.tool_call", "agent.file_change"):
        detail = " ".join(str(d[k]) for k in ("tool", "path", "command") if d.get(k))[:160]
    elif ev.kind == "agent.command":
        detail = str(d.get("command", ""))[:160]
    elif ev.kind == "agent.tool_result":
        detail = f"{d.get('tool')} {'error' if d.get('is_error') else 'ok'}"
    elif ev.kind == "agent.usage":
        detail = f"in={d.get('input')} out={d.get('output')} cost=${d.get('cost_usd')}"
    elif ev.kind == "decision.made":
        detail = f"{d.get('title')} → {d.get('agent')} ({d.get('source')}, {d.get('confidence')})"
    elif ev.kind in ("cycle.finished", "cycle.skipped"):
        detail = f"{d.get('status', 'skipped')} {d.get('reason') or ''}".strip()
    elif ev.kind in ("pr.opened", "pr.skipped"):
        detail = str(d.get("url") or d.get("reason") or "")
    elif ev.kind in ("stage.failed", "agent.finished"):
        detail = " ".join(f"{k}={d[k]}" for k in ("status", "stop_reason", "error") if d.get(k))[:200]
    elif ev.kind == "stage.skipped":
        detail = f"if {d.get('if')} was false"
    elif ev.kind == "notify.sent":
        detail = f"{d.get('url')} → {d.get('status_code')}" + (f" ({d.get('error')})" if d.get("error") else "")
    if ev.kind.startswith("stage.") and isinstance(ev.data.get("step"), int):
        detail = f"[{ev.data['step']}{' ' + _cell(ev.data['as']) if ev.data.get('as') else ''}] {detail}".strip()
    ts = _cell(ev.ts)[11:19]
    return strip_control(f"{ev.seq:>4} {ts} {_cell(ev.stage):<8} {ev.kind:<18} {_cell(detail)}")


def print_event(ev: "Event", console: Console | None = None) -> None:
    """One event line, on stdout unless another console is given (stderr when stdout carries JSON)."""
    style = {
        "stage.failed": "red",
        "cycle.finished": "bold",
        "cycle.skipped": "yellow",
        "decision.made": "cyan",
        "pr.opened": "green",
    }.get(ev.kind)
    (console or out).print(event_line(ev), style=style)


def _event_printer(as_json: bool) -> "Callable[[Event], None]":
    """Prints events where they do not mix with the command's output: stderr when stdout is JSON."""
    return functools.partial(print_event, console=err if as_json else out)


def print_report(report: dict[str, Any], as_json: bool) -> None:
    report = _untrusted(report)
    if as_json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    status = report.get("status")
    colour = "green" if status == "succeeded" else "yellow" if status == "skipped" else "red"
    t.add_row("cycle", str(report.get("cycle_id")))
    t.add_row("workspace", str(report.get("workspace")))
    reason = f" ({report.get('reason')})" if report.get("reason") else ""
    t.add_row("status", Text.assemble((str(status), colour), reason))
    if report.get("duration_s") is not None:
        t.add_row("duration", f"{report['duration_s']:.1f} s")
    dec = report.get("decision") or {}
    if dec:
        t.add_row(
            "task",
            Text.assemble(
                str(dec.get("title")), (f" ({dec.get('source')}, confidence {dec.get('confidence')})", "dim")
            ),
        )
        t.add_row("agent", str(dec.get("agent")))
    ag = report.get("agent") or {}
    if ag:
        tok = ag.get("tokens") or {}
        t.add_row(
            "run",
            f"{ag.get('status')}, exit {ag.get('exit_code')}, {ag.get('num_turns')} turns, "
            f"${ag.get('cost_usd', 0):.4f}, tokens in {tok.get('input')} out {tok.get('output')} "
            f"cached {tok.get('cached')}",
        )
        if ag.get("files_changed"):
            t.add_row("files", ", ".join(ag["files_changed"][:20]))
    if report.get("branch"):
        t.add_row("branch", str(report["branch"]))
    pr = report.get("pr") or {}
    if pr:
        t.add_row("pr", " ".join(str(x) for x in (pr.get("url"), pr.get("status"), pr.get("reason")) if x))
    steps = report.get("steps") or []
    if len(steps) > 1:
        shown = [
            f"{s.get('op')}{' → ' + str(s['as']) if s.get('as') else ''} {s.get('status')}"
            + (f" ({s['reason']})" if s.get("reason") and s.get("status") != "succeeded" else "")
            for s in steps
            if isinstance(s, dict)
        ]
        t.add_row("steps", "; ".join(shown))
    out.print(t)


def _exit_for(report: dict[str, Any]) -> int:
    from orchestration.models import Status

    return EXIT_OK if report.get("status") == Status.SUCCEEDED.value else EXIT_FAILED


# -- commands --------------------------------------------------------------------------------------


def _validate_manifest(f: Path, data: Any) -> bool:
    """A bare manifest file: its ops, arguments, names and references (env names and permissions are checked
    where a config uses it). True when valid."""
    from orchestration.config import ConfigError, parse_manifest
    from orchestration.pipeline.check import check_steps

    try:
        manifest = parse_manifest(data, str(f))
    except ConfigError as exc:
        for line in exc.errors:
            out.print(_tagged("invalid", "red", f"{exc.source}: {line}"))
        return False
    problems = check_steps(manifest.pipeline)
    for p in problems:
        out.print(_tagged("invalid", "red", f"{f}: {p}"))
    if not problems:
        about = f"manifest {manifest.id} {manifest.version}, {len(manifest.pipeline)} steps"
        out.print(_tagged("ok", "green", f"{f} ({about})"))
    return not problems


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="workspace config or pipeline manifest files")]) -> None:
    """Check config and manifest files without running anything (exit 2 if any is invalid)."""
    from orchestration.config import ConfigError, load_config, read_json
    from orchestration.pipeline.manifest import is_bare_manifest
    from orchestration.policy import shell_warning

    bad = 0
    for f in files:
        try:
            data = read_json(f)
            if is_bare_manifest(data):
                bad += not _validate_manifest(f, data)
                continue
            cfg = load_config(f)
        except ConfigError as exc:
            bad += 1
            for line in exc.errors:
                out.print(_tagged("invalid", "red", f"{exc.source}: {line}"))
            continue
        from orchestration.deployment import config_warnings

        problems = _config_problems(cfg)
        warnings = [w for w in (shell_warning(cfg, get_settings()), *config_warnings(cfg, get_settings())) if w]
        for warning in warnings:
            out.print(_tagged("warning", "yellow", f"{f}: {warning}"))
        if problems:
            bad += 1
            for p in problems:
                out.print(_tagged("invalid", "red", f"{f}: {p}"))
            continue
        out.print(_tagged("ok", "green", f"{f} (workspace {cfg.id})"))
    raise typer.Exit(EXIT_INVALID if bad else EXIT_OK)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="workspace config file")],
    local: Annotated[bool, typer.Option("--local", help="run every stage in this process, no Redis or worker")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    no_follow: Annotated[bool, typer.Option("--no-follow", help="enqueue and return at once")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="stop after decide")] = False,
) -> None:
    """Run one cycle now (ignores window and jitter)."""
    from orchestration import control, cycle

    printer = _event_printer(as_json)
    cfg = _load(config)
    if local:
        svc = _local_services(printer)
        ctx = cycle.enqueue(svc, cfg, trigger="local", dry_run=dry_run)
        report = cycle.run_local(ctx, svc).public()
        print_report(report, as_json)
        raise typer.Exit(_exit_for(report))
    svc, _client = _redis_services()
    from tasks.app import bound_broker_calls
    from tasks.cycle import send_cycle

    bound_broker_calls()
    try:
        ctx = control.start_cycle(svc, cfg, send_cycle, dry_run=dry_run)
    except control.SendFailed as exc:
        _die(f"cannot reach the Celery broker at {redact_url(get_settings().broker)}: {exc.error}")
    if no_follow:
        if as_json:
            print_report({"cycle_id": ctx.cycle_id, "workspace": ctx.workspace, "status": "queued"}, True)
        else:
            out.print(f"queued cycle {ctx.cycle_id}; follow it with `orchestrate watch {ctx.cycle_id}`")
        raise typer.Exit(EXIT_OK)
    if not as_json:
        out.print(f"cycle {ctx.cycle_id} queued", style="dim")
    report = _follow(svc, ctx.cycle_id, printer=printer)
    print_report(report, as_json)
    raise typer.Exit(_exit_for(report))


def _follow(
    svc: "Services",
    cycle_id: str,
    announce_wait: bool = True,
    printer: "Callable[[Event], None]" = print_event,
) -> dict[str, Any]:
    from orchestration.hub import RedisHub
    from orchestration.models import Status

    assert isinstance(svc.hub, RedisHub)
    t0 = time.monotonic()
    hinted = False

    def waiting() -> bool:
        nonlocal hinted
        if announce_wait and not hinted and time.monotonic() - t0 > 15:
            record = svc.state.get_cycle(cycle_id)
            if record is not None and record.status is Status.QUEUED:
                err.print("still queued: is a worker running? (`orchestrate worker`)", style="yellow")
                hinted = True
        return False

    try:
        with _interruptible():
            for ev in svc.hub.follow(cycle_id, stop=waiting):
                printer(ev)
    except KeyboardInterrupt:
        err.print(f"\nstopped following; the cycle goes on. Cancel it with `orchestrate cancel {cycle_id}`.")
        raise typer.Exit(130) from None
    record = svc.state.get_cycle(cycle_id)
    return record.summary().public() if record else {"cycle_id": cycle_id, "status": None}


@app.command()
def watch(cycle_id: Annotated[str | None, typer.Argument(help="cycle to replay and follow")] = None) -> None:
    """Replay a cycle's events and follow it to the end; with no id, follow every cycle."""
    from orchestration.hub import RedisHub

    svc, _ = _redis_services()
    assert isinstance(svc.hub, RedisHub)
    if cycle_id:
        if svc.state.get_cycle(cycle_id) is None and not svc.hub.replay(cycle_id, count=1):
            _die(f"no cycle {cycle_id!r}")
        report = _follow(svc, cycle_id, announce_wait=False)
        raise typer.Exit(_exit_for(report))
    try:
        with _interruptible():
            for ev in svc.hub.subscribe_all():
                out.print(f"{_cell(ev.cycle_id)[:24]:<24} " + event_line(ev))
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_OK) from None


def _cycles_table(records: list[Any]) -> Any:
    """Two lines a cycle, readable in 80 columns: id, workspace, status, stage, time against budget, cost
    against cap; then the agent, the task and the PR."""
    from rich.console import Group

    from orchestration.lifecycle import elapsed_s

    lines: list[Any] = [Text(f"recent cycles ({len(records)})", style="bold")]
    for r in records:
        ctx, report = r.ctx, r.summary()
        budget = (ctx.config.get("budget") or {}) if isinstance(ctx.config, dict) else {}
        status = ctx.status.value + (f" ({ctx.reason.value})" if ctx.reason else "")
        colour = {"succeeded": "green", "running": "cyan", "queued": "cyan", "skipped": "yellow"}.get(
            ctx.status.value, "red"
        )
        spent = ctx.spent_usd or (ctx.agent.cost_usd if ctx.agent else 0.0)
        seconds = report.duration_s if report.duration_s is not None else elapsed_s(ctx)
        took = f"{seconds:.0f}/{budget.get('cycle_s', '?')} s" if ctx.started_at else "not started"
        lines.append(
            Text.assemble(
                (_cell(r.cycle_id), "bold"),
                f"  {_cell(r.workspace)}  ",
                (status, colour),
                f"  {_cell(stage_of(r))}  {took}  ${spent:.2f}/${budget.get('max_cost_usd', '?')}",
            )
        )
        pr = report.pr.url if report.pr and report.pr.url else (f"pr {report.pr.status}" if report.pr else "")
        task = _cell(ctx.decision.title)[:50] if ctx.decision else ""
        agent = ctx.decision.agent if ctx.decision else ""
        detail = "  ".join(x for x in (agent, task, _cell(pr)) if x)
        if detail:
            lines.append(Text(f"    {detail}", style="dim"))
    return Group(*lines)


@app.command()
def status(
    cycle_id: Annotated[str | None, typer.Argument()] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    workspace: Annotated[str | None, typer.Option("--workspace", "-w")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n")] = 20,
    watch_: Annotated[bool, typer.Option("--watch", help="refresh the table until Ctrl-C")] = False,
    every: Annotated[float, typer.Option("--every", min=0.2, help="seconds between refreshes")] = 2.0,
) -> None:
    """One cycle's report, or a table of recent cycles across workspaces (status, stage, agent, time
    against budget, cost against cap, PR)."""
    svc, _ = _redis_services()
    if cycle_id:
        record = svc.state.get_cycle(cycle_id)
        if record is None:
            _die(f"no cycle {cycle_id!r}")
        print_report(record.summary().public(), as_json)
        return
    if as_json:
        rows = _untrusted([r.summary().public() for r in svc.state.recent_cycles(workspace, limit)])
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if not watch_:
        out.print(_cycles_table(svc.state.recent_cycles(workspace, limit)))
        return
    from rich.live import Live

    try:
        with (
            _interruptible(),
            Live(_cycles_table(svc.state.recent_cycles(workspace, limit)), console=out, auto_refresh=False) as live,
        ):
            while True:
                time.sleep(every)
                live.update(_cycles_table(svc.state.recent_cycles(workspace, limit)), refresh=True)
    except KeyboardInterrupt:
        return


@app.command()
def workers() -> None:
    """The hosts whose workers are alive (by their heartbeats): their queues, agents and running cycles."""
    svc, _ = _redis_services()
    beats = svc.state.workers()
    running = [r for r in svc.state.recent_cycles(None, 500) if r.live]
    if not beats:
        out.print("no live workers (none has sent a heartbeat lately); start one with `orchestrate worker`")
    t = Table(title=f"live workers ({len(beats)})", box=box.SIMPLE_HEAD)
    for col in ("host", "worker", "agents", "queues", "seen", "running cycles"):
        t.add_column(col, overflow="fold")
    now = time.time()
    for b in beats:
        agents = [q.removeprefix("agent.") for q in b.queues if q.startswith("agent.")]
        mine = [f"{r.cycle_id} ({stage_of(r)})" for r in running if r.host == b.host and r.ctx.worktree]
        t.add_row(
            _cell(b.host),
            _cell(b.node),
            ", ".join(agents),
            ", ".join(b.queues),
            f"{now - b.at:.0f} s ago",
            "\n".join(mine),
        )
    if beats:
        out.print(t)
    waiting = [r for r in running if not r.ctx.worktree]
    if waiting:
        out.print(f"{len(waiting)} cycle(s) not on a host yet: " + ", ".join(r.cycle_id for r in waiting[:10]))


@app.command()
def cancel(cycle_id: str) -> None:
    """Stop a cycle: the agent is stopped within seconds and its work is kept on the branch."""
    from orchestration.control import CancelOutcome, request_cancel

    svc, _ = _redis_services()
    result = request_cancel(svc, cycle_id)
    if result.outcome is CancelOutcome.NOT_FOUND:
        _die(f"no cycle {cycle_id!r}")
    if result.outcome is CancelOutcome.ALREADY_ENDED:
        out.print(f"cycle {cycle_id} already ended ({result.status.value if result.status else 'unknown'})")
        return
    out.print(f"cancel requested for {cycle_id}; `orchestrate watch {cycle_id}` shows it end")


MIN_TOKEN_LEN = 16


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="address to listen on (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8700,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="no token (loopback addresses only)")] = False,
) -> None:
    """Serve the web monitor: recent cycles live, one cycle's events, cancel, metrics (needs ORCH_SERVE_TOKEN)."""
    from orchestration.web.auth import is_loopback_host

    settings = get_settings()
    if no_auth and not is_loopback_host(host):
        _die(
            f"--no-auth serves without a token, which is allowed on a loopback address only (127.0.0.1, ::1, "
            f"localhost), not {host}; set ORCH_SERVE_TOKEN to serve on {host}",
            EXIT_INVALID,
        )
    if not no_auth:
        if not settings.serve_token:
            _die(
                "ORCH_SERVE_TOKEN is not set: the monitor needs a token (e.g. `export ORCH_SERVE_TOKEN=$(openssl "
                "rand -hex 32)`); on a loopback address you may pass --no-auth instead",
                EXIT_INVALID,
            )
        if len(settings.serve_token) < MIN_TOKEN_LEN:
            _die(f"ORCH_SERVE_TOKEN is too short: use at least {MIN_TOKEN_LEN} random characters", EXIT_INVALID)
    from orchestration.web.app import ServeConfig
    from orchestration.web.server import run as run_server

    cfg = ServeConfig.from_settings(settings, auth=not no_auth)
    where = f"[{host}]" if ":" in host else host
    auth = "no auth (loopback only)" if no_auth else "token auth"
    err.print(f"web monitor on http://{where}:{port} ({auth}), Redis {redact_url(settings.redis_url)}", style="dim")
    run_server(cfg, host, port)


class _ReadingBar:
    """`analyze`'s progress bar (on stderr, gone when done), drawn from the analyzer's own calls in this
    thread: a refresh thread would make the analyzer start its worker processes with spawn (each one
    importing this CLI again) instead of fork. Nothing is imported or drawn until a file is read: a run
    answered from the cache shows no bar."""

    REFRESH_S = 0.1  # rich's own default rate, 10 a second

    def __init__(self) -> None:
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}
        self.drawn = 0.0

    def tick(self, provider: str, done: int, total: int) -> None:
        if self.progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (TextColumn("reading {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self.progress = Progress(*columns, console=err, transient=True, auto_refresh=False)
            self.progress.start()
        if provider not in self.tasks:
            self.tasks[provider] = self.progress.add_task(f"{provider} sessions", total=total)
        self.progress.update(self.tasks[provider], completed=done)
        now = time.monotonic()
        if now - self.drawn >= self.REFRESH_S or done >= total:
            self.drawn = now
            self.progress.refresh()

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


@app.command()
def analyze(
    config: Path,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    since_days: Annotated[int | None, typer.Option("--since-days")] = None,
) -> None:
    """What people did with their agents in this workspace."""
    from orchestration.sessions import analyze_sessions

    cfg = _load(config)
    if since_days is not None:
        cfg.sessions.since_days = since_days
    bar = _ReadingBar()
    try:
        ins = analyze_sessions(cfg.repo_path(), cfg.sessions, progress=bar.tick)
    finally:
        bar.stop()
    ins = redact_model(ins)  # session text is untrusted: what people typed may hold secrets or escapes
    if as_json:
        print_report(ins.model_dump(mode="json"), True)  # masked and stripped like every report
        return
    t = Table(title=f"sessions in {cfg.workspace.repo}", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    t.add_column("provider", no_wrap=True)
    for col in ("sessions", "turns", "tools", "input", "output", "cache rd", "cache wr", "skip"):
        t.add_column(col, justify="right", no_wrap=True)
    rows = [*ins.providers.items(), ("all", ins)]
    for name, p in rows:
        t.add_row(
            name,
            str(p.sessions),
            str(p.turns),
            str(p.tool_calls),
            str(p.tokens.input),
            str(p.tokens.output),
            str(p.tokens.cache_read),
            str(p.tokens.cache_write),
            str(sum(p.skipped.values())),
        )
    out.print(t)
    top = {"top files": ins.files, "top tools": ins.tools, "failures": ins.failures}
    for label, counts in top.items():
        if counts:
            out.print(f"{label}: " + ", ".join(f"{_cell(k)} ({n})" for k, n in list(counts.items())[:8]))
    out.print(f"trouble: {ins.interruptions} interruptions, {ins.abandoned} sessions ended on an error")
    for u in ins.unfinished:
        why = f"failing {_cell(u.failure)}" if u.reason == "error" else "interrupted"
        out.print(f"  unfinished ({u.provider}, {_cell(u.at or '')[:16]}, {why}): {_cell(u.last_prompt)[:100]}")
    for w in ins.work:
        if w.kind == "failing":
            what = ", ".join(_cell(x) for x in w.subjects[:2]) or _cell(w.target or "")
            sessions = f"{len(w.sessions)} session{'s' if len(w.sessions) != 1 else ''}"
            out.print(f"  still failing: {_cell(w.target or '')}: {what} ({w.failures} of {w.runs} runs, {sessions})")
    if ins.goals:
        out.print("recent requests: " + " | ".join(_cell(g)[:60] for g in ins.goals[:5]))


@app.command()
def decide(config: Path, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Analyze and decide the next task without running it."""
    from orchestration.agents.runner import agents_on_path
    from orchestration.decide.orchestrator import make_decision
    from orchestration.sessions import analyze_sessions

    cfg = _load(config)
    try:
        svc, _ = _redis_services()
    except Fatal:
        err.print("Redis is not reachable: using local state for backlog and task history", style="yellow")
        svc = _local_services()
    with err.status("analyzing sessions and deciding…"):
        ins = analyze_sessions(cfg.repo_path(), cfg.sessions)
        outcome = make_decision(
            insights=ins,
            cfg=cfg,
            history=svc.state.task_history(cfg.id, time.time() - cfg.decision.avoid_repeat_days * 86400),
            backlog=svc.state.list_backlog(cfg.id),
            available=agents_on_path(cfg),
            repo=None if cfg.workspace.is_url else cfg.repo_path(),
        )
    decision = redact_model(outcome.decision) if outcome.decision else None
    runners_up = [{"title": _cell(c.title), "score": c.score, "op_hash": c.op_hash} for c in outcome.runners_up]
    sources = {name: report.model_dump(mode="json") for name, report in outcome.sources.items()}
    if as_json:
        data = decision.model_dump(mode="json") if decision else None
        print_report({"decision": data, "reason": outcome.reason, "runners_up": runners_up, "sources": sources}, True)
        raise typer.Exit(EXIT_OK if decision else EXIT_FAILED)
    if decision is None:
        out.print(
            "no task left: every candidate was done recently"
            if outcome.reason == "no_task"
            else "no allowed agent can run here (not installed, or no runner for it)"
        )
        raise typer.Exit(EXIT_FAILED)
    out.print(
        Text.assemble(
            (_cell(decision.title), "bold"),
            f"  ({decision.source}, confidence {decision.confidence}, agent {decision.agent})",
        )
    )
    out.print(f"why: {_cell(decision.rationale)}")
    if decision.fallback_reason:
        out.print(f"llm not used: {_cell(decision.fallback_reason)}", style="yellow")
    out.print(strip_control(decision.task))
    if runners_up:
        out.print("runners-up: " + "; ".join(f"{c['title']} ({c['score']:.0f})" for c in runners_up))
    for name, report in outcome.sources.items():
        if report.error:
            out.print(f"source {name} skipped: {_cell(report.error)}", style="yellow")


@app.command()
def enqueue(config: Path, task: str) -> None:
    """Put a human task first in line for the workspace's next cycle."""
    cfg = _load(config)
    if not task.strip():
        _die("the task is empty", EXIT_INVALID)
    svc, _ = _redis_services()
    n = svc.state.push_backlog(cfg.id, task.strip())
    out.print(f"queued for {cfg.id} (backlog: {n})")


@app.command()
def schedule(config: Path, count: Annotated[int, typer.Option("--count", "-n", min=1)] = 5) -> None:
    """Print the next fire times of a config's schedule."""
    cfg = _load(config)
    if not cfg.schedule.cron:
        out.print(f"{cfg.id}: no schedule.cron set; cycles run only when started by hand")
        return
    from orchestration.cycle import in_window
    from orchestration.schedule import next_fires

    sched = cfg.schedule
    assert sched.cron is not None
    window = f"window {sched.window.start}-{sched.window.end}" if sched.window else "no window"
    out.print(
        f"{cfg.id}: {sched.cron} in {sched.timezone}, {window}, jitter up to {sched.jitter_s} s, "
        f"on_missed {sched.on_missed}",
        style="dim",
    )
    for when in next_fires(sched.cron, sched.timezone, count):
        mark = "" if in_window(cfg, when) else "  outside the window: skipped"
        out.print(f"{when.isoformat()}  ({when.astimezone(UTC).isoformat()}){mark}")


@app.command()
def plan(
    config: Annotated[Path, typer.Argument(help="workspace config file")],
    as_json: Annotated[bool, typer.Option("--json", help="print the steps as JSON")] = False,
) -> None:
    """Print the compiled steps of a config's pipeline without running anything (exit 2 on any error)."""
    from orchestration.cycle import plan as compile_plan

    cfg = _load(config)
    steps = compile_plan(cfg)
    if as_json:
        rows = [
            {
                "index": s.index,
                "op": s.op,
                "as": s.as_,
                "stage": s.stage,
                "task": f"orchestrate.op.{s.op}",
                "queue": s.queue,
                "soft_time_limit_s": s.soft_s,
                "time_limit_s": s.hard_s,
                "permissions": s.uses,
                "references": s.refs,
                "if": s.condition,
            }
            for s in steps
        ]
        out.print(orjson.dumps({"workspace": cfg.id, "budget_s": cfg.budget.cycle_s, "steps": rows}).decode())
        return
    out.print(f"{cfg.id}: {len(steps)} steps, budget {cfg.budget.cycle_s} s", style="bold")
    for s in steps:
        name = s.op + (f" → {s.as_}" if s.as_ else "")
        out.print(f"{s.index:>3}  {name:<36} queue {s.queue:<22} limit {s.soft_s}/{s.hard_s} s")
        if s.condition:
            out.print(f"       if {s.condition}", style="dim")
        if s.uses:
            out.print(f"       uses {', '.join(s.uses)}", style="dim")
        if s.refs:
            out.print(f"       reads {', '.join(s.refs)}", style="dim")


@app.command()
def schema(
    kind: Annotated[str, typer.Argument(help="config or manifest")] = "config",
) -> None:
    """Print the JSON Schema of a workspace config or a pipeline manifest (for editors)."""
    from orchestration.pipeline.schema import config_schema, manifest_schema

    if kind not in ("config", "manifest"):
        _die(f"unknown schema {kind!r}: choose config or manifest", EXIT_INVALID)
    data = config_schema() if kind == "config" else manifest_schema()
    out.print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


@app.command()
def gc(dry_run: Annotated[bool, typer.Option("--dry-run", help="only list what would be removed")] = False) -> None:
    """Clean up: end cycles whose worker died, and remove worktrees that hold nothing unsaved."""
    from orchestration.janitor import gc_worktrees, reap

    try:
        svc, _ = _redis_services()
    except Fatal:
        err.print("Redis is not reachable: cleaning local-mode state only", style="yellow")
        svc = _local_services()
    if not dry_run:
        for r in reap(svc):
            out.print(f"ended cycle {r.cycle_id} ({r.reason})")
    rows = gc_worktrees(svc, dry_run=dry_run)
    if not rows:
        out.print(f"no worktrees under {svc.state_dir / 'worktrees'}")
        return
    t = Table(title="worktrees", box=box.SIMPLE_HEAD)
    for col in ("cycle", "status", "action", "why"):
        t.add_column(col)
    for w in rows:
        t.add_row(w.cycle_id, w.status, w.action, w.detail)
    out.print(t)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    agents: Annotated[str | None, typer.Option("--agents", help="comma-separated agents this worker runs")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1)] = 2,
) -> None:
    """Start a prefork Celery worker for `orchestrate` and `agent.<name>` queues."""
    from orchestration.agents.registry import AGENTS

    if agents:
        names = [a.strip() for a in agents.split(",") if a.strip()]
        unknown = [a for a in names if a not in AGENTS]
        if unknown:
            _die(
                f"--agents: unknown agent(s) {', '.join(unknown)}; known: {', '.join(AGENTS)}",
                EXIT_INVALID,
            )
    else:
        # an agent is installed when its default command is on PATH
        names = [name for name, spec in AGENTS.items() if shutil.which(spec.default_command)]
    user = get_settings().agent_user
    if user:
        from orchestration.agents.process import RunAs

        try:
            RunAs.lookup(user)
        except ValueError as exc:
            _die(str(exc), EXIT_INVALID)
    from orchestration.cycle import STAGE_QUEUE, host_queue

    extra, host = _node(list(ctx.args))
    queues = ",".join([STAGE_QUEUE, *[AGENTS[a].queue for a in names], host_queue(host)])
    err.print(f"worker queues: {queues}", style="dim")
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks",
        "worker",
        "-P",
        "prefork",
        "-c",
        str(concurrency),
        "-Q",
        queues,
        "-E",
        "--loglevel",
        "INFO",
        *extra,
    ]
    # The worker's pool children learn their host from the environment: `host.<host>` is where the steps
    # after a worktree was made here are sent, and what records and the janitor call this host.
    os.execve(sys.executable, argv, {**os.environ, "ORCH_HOSTNAME": host})


def _node(args: list[str]) -> tuple[list[str], str]:
    """The worker's extra arguments and this host's name: the host part of `-n/--hostname NAME@HOST`
    (Celery's `%h` is this machine's name), else ORCH_HOSTNAME or the machine's name, given to Celery as
    `-n orchestrate@HOST` so that Flower and `celery inspect` show the same host."""
    import re
    import socket

    for i, arg in enumerate(args):
        value = None
        if arg in ("-n", "--hostname") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--hostname="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-n") and len(arg) > 2:
            value = arg[2:]
        if value is not None:
            host = value.rpartition("@")[2] if "@" in value else value
            host = host.replace("%h", socket.gethostname()).replace("%n", socket.gethostname().split(".")[0])
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}", host):
                _die(f"--hostname {value!r}: its host part must be letters, digits, '.', '_' or '-'", EXIT_INVALID)
            return args, host
    host = get_settings().hostname
    return [*args, "-n", f"orchestrate@{host}"], host


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def beat(ctx: typer.Context) -> None:
    """Run Celery beat with one entry per config in ORCH_CONFIG_DIR (extra args go to celery beat)."""
    args = list(ctx.args)
    # Our schedulers read the config directory again while they run; RedBeat's name maps to ours.
    schedulers = {
        "redbeat.RedBeatScheduler": "beat_schedule.RedBeatScheduler",
        "redbeat": "beat_schedule.RedBeatScheduler",
    }
    given = [i for i, a in enumerate(args) if a in ("-S", "--scheduler") and i + 1 < len(args)]
    for i in given:
        args[i + 1] = schedulers.get(args[i + 1], args[i + 1])
    if not given and not any(a.startswith("--scheduler=") for a in args):
        args += ["-S", "beat_schedule.Scheduler"]
    argv = [sys.executable, "-m", "celery", "-A", "beat_schedule", "beat", "--loglevel", "INFO", *args]
    os.execv(sys.executable, argv)


def main() -> None:
    try:
        get_settings()
    except ValidationError as exc:
        for e in exc.errors():
            name = "ORCH_" + "_".join(str(p) for p in e["loc"]).upper()
            err.print(f"orchestrate: invalid environment: {name}={e.get('input')!r}: {e['msg']}")
        sys.exit(EXIT_INVALID)
    try:
        app()
    except Fatal as exc:
        err.print(f"orchestrate: {exc}")
        sys.exit(exc.code)
    except Exception as exc:
        redis = sys.modules.get("redis")  # a command that talks to Redis imported it
        if redis is None or not isinstance(exc, redis.RedisError):
            raise
        err.print(f"orchestrate: Redis error: {exc}")
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
