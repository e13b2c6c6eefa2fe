"""Claude Code headless: the command line and the `stream-json` event parser.

Success comes from the final `result` event (subtype and `is_error`: an API failure can arrive as
`subtype: success` with `is_error: true`), never from the exit code alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestration.agents.base import Emit, EnvGrant, RunTally, clip, count, parse_event, relative_to, text_or_none
from orchestration.agents.prices import cost_usd, price_for
from orchestration.agents.process import Verdict
from orchestration.agents.registry import AgentSpec, RunContext, SessionSource, register
from orchestration.config import ClaudeAgent, Price, WorkspaceConfig
from orchestration.sessions import claude as sessions

NAME = "claude-code"
FILE_TOOLS = {"Edit", "Write", "MultiEdit", "NotebookEdit"}

# Claude Code's own endpoint, credential and settings variables (on top of the base environment).
ENV = EnvGrant(
    names=frozenset(
        {"ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "CLAUDE_CONFIG_DIR", "DISABLE_TELEMETRY", "DISABLE_AUTOUPDATER"}
    ),
    prefixes=("CLAUDE_CODE_",),
)


def build_argv(command: str, cfg: WorkspaceConfig, prompt: str) -> list[str]:
    agent = AGENT.section(cfg)
    argv = [
        command,
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        agent.permission_mode,
        "--max-turns",
        str(cfg.budget.max_turns),
        "--max-budget-usd",
        f"{cfg.budget.max_cost_usd:g}",
    ]
    if agent.model:
        argv += ["--model", agent.model]
    if agent.allowed_tools:
        argv += ["--allowedTools", ",".join(agent.allowed_tools)]
    if agent.disallowed_tools:
        argv += ["--disallowedTools", ",".join(agent.disallowed_tools)]
    # The prompt goes last, behind "--", so a prompt starting with "-" is never read as a flag.
    return [*argv, "--", prompt]


class ClaudeStream:
    """Turns stream-json lines into hub events and a RunTally; tells the supervisor when to stop."""

    def __init__(
        self, emit: Emit, tally: RunTally, worktree: Path, max_cost_usd: float, prices: dict[str, Price]
    ) -> None:
        self.emit = emit
        self.tally = tally
        self.worktree = worktree
        self.max_cost_usd = max_cost_usd
        self.prices = prices
        self.tool_names: dict[str, str] = {}
        self.usage_by_message: dict[str, dict[str, int]] = {}
        self.cost_by_message: dict[str, float] = {}
        self.estimated_cost = 0.0

    def feed(self, line: bytes) -> Verdict:
        ev = parse_event(line, self.tally)
        if ev is None:
            return Verdict.CONTINUE
        kind = ev.get("type")
        try:
            if kind == "system":
                self._system(ev)
            elif kind == "assistant":
                self._assistant(ev)
            elif kind == "user":
                self._user(ev)
            elif kind == "result":
                self._result(ev)
                return Verdict.FINAL
        except (AttributeError, TypeError, ValueError, KeyError):
            # A line of the right type but the wrong shape: count it, keep going.
            self.tally.bad_lines += 1
        if self.current_cost() >= self.max_cost_usd:
            return Verdict.STOP_COST
        return Verdict.CONTINUE

    def current_cost(self) -> float:
        return self.tally.cost_usd if self.tally.cost_reported else self.estimated_cost

    def poll(self) -> Verdict | None:
        """Nothing to read besides the stream: Claude Code streams its usage."""
        return None

    def _system(self, ev: dict[str, Any]) -> None:
        if ev.get("subtype") == "init":
            self.tally.session_id = text_or_none(ev.get("session_id")) or self.tally.session_id
            self.tally.model = text_or_none(ev.get("model")) or self.tally.model
            self.emit(
                "agent.started",
                {"agent": NAME, "session_id": self.tally.session_id, "model": self.tally.model},
            )

    def _assistant(self, ev: dict[str, Any]) -> None:
        msg = ev.get("message") or {}
        if not isinstance(msg, dict):
            raise TypeError("message is not an object")
        self.tally.session_id = text_or_none(ev.get("session_id")) or self.tally.session_id
        content = msg.get("content") or []
        usage = msg.get("usage")
        if not isinstance(content, list) or not isinstance(usage, dict | None):
            raise TypeError("assistant message of the wrong shape")
        for block in content:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "text" and isinstance(block.get("text"), str):
                self.tally.last_text = block["text"]
                self.emit("agent.message", {"text": clip(block["text"])})
            elif btype == "tool_use":
                self._tool_use(block)
        mid = text_or_none(msg.get("id"))
        if isinstance(usage, dict) and mid:
            self._usage(mid, usage, text_or_none(msg.get("model")))

    def _tool_use(self, block: dict[str, Any]) -> None:
        name = text_or_none(block.get("name")) or "?"
        tool_id = text_or_none(block.get("id"))
        if tool_id:
            self.tool_names[tool_id] = name
        raw_input = block.get("input")
        inp: dict[str, Any] = raw_input if isinstance(raw_input, dict) else {}
        data: dict[str, Any] = {"tool": name}
        path = text_or_none(inp.get("file_path") or inp.get("notebook_path") or inp.get("path"))
        if path:
            data["path"] = self._rel(path)
        if name == "Bash" and isinstance(inp.get("command"), str):
            data["command"] = clip(inp["command"], 500)
        self.emit("agent.tool_call", data)
        self.tally.tool_calls += 1
        if name == "Bash" and "command" in data:
            self.emit("agent.command", {"command": data["command"]})
        if name in FILE_TOOLS and path:
            rel = self._rel(path)
            self.tally.files.add(rel)
            self.emit("agent.file_change", {"path": rel, "tool": name})

    def _user(self, ev: dict[str, Any]) -> None:
        msg = ev.get("message") or {}
        content = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(content, list):
            return
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                tool_id = text_or_none(block.get("tool_use_id")) or ""
                body = block.get("content")
                text = (
                    body
                    if isinstance(body, str)
                    else " ".join(b.get("text", "") for b in body or [] if isinstance(b, dict))
                )
                self.emit(
                    "agent.tool_result",
                    {
                        "tool": self.tool_names.get(tool_id, "?"),
                        "is_error": bool(block.get("is_error")),
                        "output": clip(text, 500),
                    },
                )

    def _usage(self, message_id: str, usage: dict[str, Any], model: str | None) -> None:
        """Prices one API response at its own model's rates and adds it to the run's estimate.

        One response may appear on several lines: each message id counts once, with its latest usage. The
        estimate is the sum over responses, and the figure reported never goes down during the run.
        """
        written = count(usage.get("cache_creation_input_tokens"))
        raw_split = usage.get("cache_creation")
        split: dict[str, Any] = raw_split if isinstance(raw_split, dict) else {}
        written_1h = count(split.get("ephemeral_1h_input_tokens"))
        # An unsplit (or zero-split) write total is priced as 5-minute writes, the cheaper kind.
        written = max(written, written_1h + count(split.get("ephemeral_5m_input_tokens")))
        now = {
            "input": count(usage.get("input_tokens")),
            "output": count(usage.get("output_tokens")),
            "cache_read": count(usage.get("cache_read_input_tokens")),
            "cache_write": written,
        }
        cost = cost_usd(
            price_for(model or self.tally.model, self.prices),
            input_tokens=now["input"],
            output_tokens=now["output"],
            cached_tokens=now["cache_read"],
            cache_write=written - written_1h,
            cache_write_1h=written_1h,
        )
        if self.usage_by_message.get(message_id) == now and self.cost_by_message.get(message_id) == cost:
            return
        self.usage_by_message[message_id] = now
        self.cost_by_message[message_id] = cost
        totals = {k: sum(u[k] for u in self.usage_by_message.values()) for k in now}
        t = self.tally
        t.input_tokens, t.output_tokens = totals["input"], totals["output"]
        t.cached_tokens, t.cache_write_tokens = totals["cache_read"], totals["cache_write"]
        self.estimated_cost = max(self.estimated_cost, sum(self.cost_by_message.values()))
        self.emit("agent.usage", {**totals, "cost_usd": round(self.current_cost(), 6), "estimated": True})

    def _result(self, ev: dict[str, Any]) -> None:
        t = self.tally
        t.final_seen = True
        t.session_id = text_or_none(ev.get("session_id")) or t.session_id
        t.num_turns = count(ev.get("num_turns")) or t.num_turns
        reported = ev.get("total_cost_usd")
        # A cost is a finite amount of at least zero (JSON `true` is not one, nor is -5).
        if isinstance(reported, int | float) and not isinstance(reported, bool) and 0 <= reported < float("inf"):
            t.cost_usd = float(reported)
            t.cost_reported = True
        usage = ev.get("usage")
        if isinstance(usage, dict):
            t.input_tokens = count(usage.get("input_tokens")) or t.input_tokens
            t.output_tokens = count(usage.get("output_tokens")) or t.output_tokens
            t.cached_tokens = count(usage.get("cache_read_input_tokens")) or t.cached_tokens
            t.cache_write_tokens = count(usage.get("cache_creation_input_tokens")) or t.cache_write_tokens
        is_error = bool(ev.get("is_error"))
        subtype = text_or_none(ev.get("subtype")) or ""
        t.success = subtype == "success" and not is_error
        result_text = text_or_none(ev.get("result")) or ""
        t.summary = clip(result_text or t.last_text, 1000)
        if not t.success:
            t.error = subtype if subtype != "success" else "is_error"
        self.emit(
            "agent.usage",
            {
                "input": t.input_tokens,
                "output": t.output_tokens,
                "cache_read": t.cached_tokens,
                "cache_write": t.cache_write_tokens,
                "cost_usd": round(self.current_cost(), 6),
                "estimated": not t.cost_reported,
            },
        )

    def _rel(self, path: str) -> str:
        return relative_to(path, self.worktree)


# -- the spec ---------------------------------------------------------------------------------------------


def has_bash(tools: list[str]) -> bool:
    """Whether a tool list lets Claude Code run shell commands (`Bash` or a `Bash(...)` rule)."""
    return any(t.strip() == "Bash" or t.strip().startswith("Bash(") for t in tools)


def _argv(command: str, cfg: WorkspaceConfig, prompt: str, worktree: Path) -> list[str]:
    return build_argv(command, cfg, prompt)  # the worktree is its working directory


def _stream(run: RunContext) -> ClaudeStream:
    return ClaudeStream(run.emit, run.tally, run.worktree, run.cfg.budget.max_cost_usd, run.cfg.budget.prices)


def _bypass(agent: ClaudeAgent) -> tuple[str, str] | None:
    return ("permission_mode", agent.permission_mode) if agent.permission_mode == "bypassPermissions" else None


def _shell(agent: ClaudeAgent) -> str | None:
    if agent.permission_mode == "bypassPermissions":
        return "permission_mode bypassPermissions"
    if has_bash(agent.allowed_tools):
        return "allowed_tools includes Bash"
    return None


AGENT = register(
    AgentSpec(
        name=NAME,
        config=ClaudeAgent,
        env=ENV,
        argv=_argv,
        stream=_stream,
        sessions=SessionSource(
            directory=lambda s: s.claude_dir,
            find=sessions.find_files,
            reader=sessions.Reader,
            path_key=sessions.session_key,
            files_share_sessions=True,
        ),
        bypass=_bypass,
        shell=_shell,
    )
)
