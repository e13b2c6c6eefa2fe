"""Codex headless: `codex exec --json` command line and event parser.

Success comes from `turn.completed` vs `turn.failed`, not the exit code; a top-level `error` event
("Reconnecting… 1/5") is transient and does not end the run. `codex exec --json` reports usage only at the
end of the turn, so the running cost is read from the session's rollout file (`token_count` events, one
per model response) while the agent works, which is what lets `max_cost_usd` stop a Codex run in time.
Those events are counted by the session analyzer's own rules (`sessions.codex.TokenCounter`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson

from orchestration.agents.base import Emit, EnvGrant, RunTally, clip, parse_event, relative_to, text_or_none
from orchestration.agents.prices import cost_usd, price_for
from orchestration.agents.process import Verdict
from orchestration.agents.registry import AgentSpec, RunContext, SessionSource, register
from orchestration.config import CodexAgent, Price, WorkspaceConfig
from orchestration.sessions import codex as sessions

NAME = "codex"
DEFAULT_MODEL = "gpt-5"  # what the price estimate assumes when neither config nor rollout names one
ROLLOUT_POLL_S = 1.0

# Codex's own home, endpoint and credential variables (on top of the base environment).
ENV = EnvGrant(names=frozenset({"CODEX_HOME", "OPENAI_BASE_URL", "OPENAI_API_KEY", "CODEX_API_KEY"}))


def build_argv(command: str, cfg: WorkspaceConfig, prompt: str, worktree: Path) -> list[str]:
    agent = AGENT.section(cfg)
    argv = [command, "exec", "--json", "--sandbox", agent.sandbox, "-C", str(worktree), "--skip-git-repo-check"]
    if agent.model:
        argv += ["--model", agent.model]
    # Behind "--": a prompt such as "review" or "-x" is never read as a subcommand or a flag.
    return [*argv, "--", prompt]


def codex_home(env: dict[str, str]) -> Path:
    return Path(env.get("CODEX_HOME") or Path(env.get("HOME", "~")).expanduser() / ".codex")


class CodexStream:
    def __init__(
        self,
        emit: Emit,
        tally: RunTally,
        worktree: Path,
        max_cost_usd: float,
        prices: dict[str, Price],
        home: Path,
        model: str | None,
    ) -> None:
        self.emit = emit
        self.tally = tally
        self.worktree = worktree
        self.max_cost_usd = max_cost_usd
        self.prices = prices
        self.home = home
        self.tally.model = model
        self.rollout: Path | None = None
        self.rollout_offset = 0
        self.rollout_model: str | None = None
        self.tokens = sessions.TokenCounter()
        self.next_poll = 0.0
        self.estimated_cost = 0.0

    # -- stdout -----------------------------------------------------------------------------------------
    def feed(self, line: bytes) -> Verdict:
        ev = parse_event(line, self.tally)
        if ev is None:
            return Verdict.CONTINUE
        if not isinstance(ev.get("type"), str):
            self.tally.bad_lines += 1
            return Verdict.CONTINUE
        kind = ev["type"]
        try:
            if kind == "thread.started":
                self.tally.session_id = text_or_none(ev.get("thread_id")) or self.tally.session_id
                self.emit(
                    "agent.started", {"agent": NAME, "session_id": self.tally.session_id, "model": self.tally.model}
                )
            elif kind in ("item.started", "item.completed"):
                item = ev.get("item")
                if not isinstance(item, dict):
                    raise TypeError("item is not an object")
                self._item(item, completed=kind == "item.completed")
            elif kind == "error":
                message = text_or_none(ev.get("message")) or "error"
                self.tally.error = message  # transient unless a turn.failed follows
                self.emit("agent.message", {"text": clip(f"codex: {message}"), "level": "warning"})
            elif kind == "turn.completed":
                self.tally.num_turns += 1
                self._usage(ev.get("usage"))
                self.tally.final_seen, self.tally.success, self.tally.error = True, True, None
                return Verdict.FINAL
            elif kind == "turn.failed":
                self.tally.num_turns += 1
                err = ev.get("error")
                failure = text_or_none(err.get("message")) if isinstance(err, dict) else None
                self.tally.final_seen, self.tally.success = True, False
                self.tally.error = failure or "turn failed"
                self.tally.summary = clip(self.tally.error, 1000)
                return Verdict.FINAL
        except (AttributeError, TypeError, ValueError, KeyError):
            self.tally.bad_lines += 1
        return Verdict.STOP_COST if self.current_cost() >= self.max_cost_usd else Verdict.CONTINUE

    def _item(self, item: dict[str, Any], completed: bool) -> None:
        kind = item.get("type")
        if kind == "command_execution":
            command = clip(text_or_none(item.get("command")) or "", 500)
            if not completed:
                self.emit("agent.tool_call", {"tool": "shell", "command": command})
                self.tally.tool_calls += 1
                self.emit("agent.command", {"command": command})
            else:
                code = item.get("exit_code")
                self.emit(
                    "agent.tool_result",
                    {
                        "tool": "shell",
                        "is_error": isinstance(code, int) and code != 0,
                        "exit_code": code,
                        "output": clip(text_or_none(item.get("aggregated_output")) or "", 500),
                    },
                )
        elif kind == "file_change":
            changes = [c for c in item.get("changes") or [] if isinstance(c, dict) and text_or_none(c.get("path"))]
            if not completed:
                self.emit(
                    "agent.tool_call",
                    {"tool": "apply_patch", "path": self._rel(changes[0]["path"]) if changes else None},
                )
                return
            for change in changes:
                rel = self._rel(change["path"])
                self.tally.files.add(rel)
                self.emit(
                    "agent.file_change", {"path": rel, "kind": text_or_none(change.get("kind")), "tool": "apply_patch"}
                )
        elif kind == "agent_message" and completed:
            text = text_or_none(item.get("text")) or ""
            self.tally.last_text = text
            self.tally.summary = clip(text, 1000)
            self.emit("agent.message", {"text": clip(text)})
        elif kind == "error" and completed:
            self.emit(
                "agent.message", {"text": clip(f"codex: {text_or_none(item.get('message'))}"), "level": "warning"}
            )
        elif kind in ("mcp_tool_call", "web_search") and not completed:
            self.emit("agent.tool_call", {"tool": text_or_none(item.get("tool")) or kind})

    def _usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        t = self.tally
        inp, cached, _cache_write, out, _reasoning = sessions.raw_usage(usage)
        t.input_tokens, t.cached_tokens, t.output_tokens = inp - cached, cached, out  # Codex's input includes cached
        self._estimate()

    def _estimate(self) -> None:
        """Prices the tokens so far and reports them (Codex states tokens, never cost). The figure never goes
        down: the rollout and the stream count the same tokens at different moments, and a cost once shown
        (and checked against the cap) is not taken back."""
        t = self.tally
        price = price_for(t.model or DEFAULT_MODEL, self.prices)
        now = cost_usd(price, input_tokens=t.input_tokens, output_tokens=t.output_tokens, cached_tokens=t.cached_tokens)
        self.estimated_cost = max(self.estimated_cost, now)
        t.cost_usd = self.estimated_cost
        self.emit(
            "agent.usage",
            {
                "input": t.input_tokens,
                "output": t.output_tokens,
                "cache_read": t.cached_tokens,
                "cache_write": 0,
                "cost_usd": round(self.estimated_cost, 6),
                "estimated": True,
            },
        )

    def current_cost(self) -> float:
        return self.estimated_cost

    # -- the rollout file, for usage while the turn runs ----------------------------------------------
    def poll(self) -> Verdict | None:
        """Reads new `token_count` lines of the rollout; a verdict when the cost limit is reached."""
        now = time.monotonic()
        if now < self.next_poll or self.tally.final_seen:
            return None
        self.next_poll = now + ROLLOUT_POLL_S
        if self.rollout is None:
            self.rollout = self._find_rollout()
            if self.rollout is None:
                return None
        try:
            with self.rollout.open("rb") as fh:
                fh.seek(self.rollout_offset)
                data = fh.read()
        except OSError:
            return None
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next poll
        self.rollout_offset += end
        changed = False
        for raw in data[:end].splitlines():
            if b'"token_count"' not in raw and b'"turn_context"' not in raw:
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            payload = obj.get("payload") if isinstance(obj, dict) else None
            if not isinstance(payload, dict):
                continue
            if obj.get("type") == "turn_context" and isinstance(payload.get("model"), str):
                self.tally.model = self.tally.model or payload["model"]
                self.rollout_model = payload["model"]
            info = payload.get("info") if payload.get("type") == "token_count" else None
            if isinstance(info, dict):
                ts = obj.get("timestamp")
                ts = ts if isinstance(ts, str) and ts else None
                changed = self.tokens.count(ts, self.rollout_model, *sessions.token_usages(info)) or changed
        if changed:
            inp, out, cached, cache_write = self.tokens.usage
            # Codex bills no cache writes: here they are input, as in Codex's own input count
            self.tally.input_tokens, self.tally.output_tokens = inp + cache_write, out
            self.tally.cached_tokens = cached
            self._estimate()
        return Verdict.STOP_COST if self.estimated_cost >= self.max_cost_usd else None

    def _find_rollout(self) -> Path | None:
        sid = self.tally.session_id
        if not sid:
            return None
        for base in (self.home / "sessions",):
            try:
                for dirpath, _dirs, files in os.walk(base):
                    for name in files:
                        if name.startswith("rollout-") and name.endswith(f"{sid}.jsonl"):
                            return Path(dirpath) / name
            except OSError:
                return None
        return None

    def _rel(self, path: str) -> str:
        return relative_to(path, self.worktree)


# -- the spec ---------------------------------------------------------------------------------------------


def _stream(run: RunContext) -> CodexStream:
    budget, home = run.cfg.budget, codex_home(run.env)
    model = AGENT.section(run.cfg).model
    return CodexStream(run.emit, run.tally, run.worktree, budget.max_cost_usd, budget.prices, home, model)


def _bypass(agent: CodexAgent) -> tuple[str, str] | None:
    return ("sandbox", agent.sandbox) if agent.sandbox == "danger-full-access" else None


def _shell(agent: CodexAgent) -> str | None:
    return "sandbox danger-full-access" if agent.sandbox == "danger-full-access" else None


AGENT = register(
    AgentSpec(
        name=NAME,
        config=CodexAgent,
        env=ENV,
        argv=build_argv,
        stream=_stream,
        sessions=SessionSource(directory=lambda s: s.codex_dir, find=sessions.find_files, reader=sessions.Reader),
        bypass=_bypass,
        shell=_shell,
    )
)
