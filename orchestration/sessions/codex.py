"""Codex rollouts: `<codex_dir>/sessions/YYYY/MM/DD/rollout-*.jsonl` and `<codex_dir>/archived_sessions/`.

Two formats are read. The current one wraps every line as `{"timestamp", "type", "payload"}` with type
`session_meta`, `turn_context`, `response_item`, `event_msg` or `compacted`. The older one starts with a
bare header `{"id", "timestamp", "instructions", ...}` followed by bare response items
(`{"type": "message", ...}`); its cwd only appears inside the injected `<environment_context>` message.

Token usage, matched to ccusage's `codex` command: Codex's `input_tokens` include the cached tokens, so
`input = input_tokens - cached_input_tokens` and `cache_read = cached_input_tokens` (clamped to the
input), `cache_write = 0` (Codex reports none). `output = output_tokens`: `reasoning_output_tokens` are
already part of `output_tokens` (ccusage treats them as informational and does not add them, which
would double-count reasoning). `total_token_usage` is cumulative for the session, so a session's usage
is counted as ccusage 20.0.24 counts it (see `TokenCounter.count`). The runner reads a running Codex's
rollout with the same `TokenCounter`, for its live cost.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from orchestration.models import parse_ts
from orchestration.sessions._common import (
    MAX_COMMAND_CHARS,
    MAX_OUTPUT_CHARS,
    MAX_PROMPT_CHARS,
    Run,
    SessionStats,
    Usage,
    Workspace,
    as_int,
    command_key,
    command_target,
    list_jsonl,
    read_objects,
    shell_script,
)

TOP_TYPES = frozenset({"session_meta", "turn_context", "response_item", "event_msg", "compacted"})
# Bare response items of the older format (and `record_type: state` bookkeeping lines).
ITEM_TYPES = frozenset(
    {
        "message",
        "reasoning",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "local_shell_call",
        "web_search_call",
    }
)
SHELL_TOOLS = frozenset({"shell", "exec_command", "shell_command", "container.exec", "local_shell"})
# Context Codex injects as "user" messages; not something the person asked for.
INJECTED_PREFIXES = (
    "<environment_context>",
    "<user_instructions>",
    "<INSTRUCTIONS>",
    "# AGENTS.md instructions",
    "<user_shell_command>",
    "<turn_aborted>",
    "<permissions",
    "<developer_instructions>",
)
PATCH_PREFIXES = ("*** Update File: ", "*** Add File: ", "*** Delete File: ", "*** Move to: ")


def find_files(codex_dir: str, skipped: Counter[str]) -> list[tuple[str, float]]:
    """Rollout files in `sessions/` (any depth) and `archived_sessions/`, with their mtimes."""
    live = list_jsonl(os.path.join(codex_dir, "sessions"), skipped, accept=lambda _d, name: name.startswith("rollout-"))
    return live + list_jsonl(os.path.join(codex_dir, "archived_sessions"), skipped)


def patch_files(text: str) -> list[str]:
    """Paths named by an apply_patch envelope (`*** Update File: P`, Add, Delete, Move to)."""
    out: list[str] = []
    if "*** " not in text:
        return out
    for line in text.splitlines():
        if line.startswith(PATCH_PREFIXES):
            path = line.split(": ", 1)[1].strip()
            if path:
                out.append(path)
    return out


# Raw Codex counters, normalized: (input incl. cached, cached, cache_write, output, reasoning)
RawUsage = tuple[int, int, int, int, int]


def raw_usage(usage: dict[str, Any]) -> RawUsage:
    inp = as_int(usage.get("input_tokens"))
    cached = min(as_int(usage.get("cached_input_tokens", usage.get("cache_read_input_tokens"))), inp)
    cache_write = min(as_int(usage.get("cache_write_input_tokens")), inp - cached)
    return (inp, cached, cache_write, as_int(usage.get("output_tokens")), as_int(usage.get("reasoning_output_tokens")))


def token_usages(info: dict[str, Any]) -> tuple[RawUsage | None, RawUsage | None]:
    """A `token_count` event's (total, last) usage; each None when absent or not an object."""
    total, last = info.get("total_token_usage"), info.get("last_token_usage")
    return (raw_usage(total) if isinstance(total, dict) else None, raw_usage(last) if isinstance(last, dict) else None)


class TokenCounter:
    """The tokens of one Codex session, from its `token_count` events in file order: `usage` is
    (input without cached and cache writes, output, cache_read, cache_write) so far."""

    def __init__(self) -> None:
        self.usage: Usage = (0, 0, 0, 0)
        # the last cumulative total, and the events already counted (ccusage drops exact repeats)
        self.prev_total: RawUsage | None = None
        self.counted_events: set[tuple[str, str | None, RawUsage]] = set()

    def count(self, ts: str | None, model: str | None, total: RawUsage | None, last: RawUsage | None) -> bool:
        """ccusage 20.0.24's rule: each event adds its `last_token_usage`, unless its cumulative total did not
        advance; total-only events add the difference of totals (never below 0); an event identical in
        (time, model, usage) to one already counted here is dropped (one without a time, `ts` None, never is).
        True when the event added tokens."""
        advanced = total is None or total != self.prev_total
        usage: RawUsage | None = None
        if last is not None and advanced:
            usage = last
        elif total is not None:
            prev = self.prev_total or (0, 0, 0, 0, 0)
            usage = (
                max(0, total[0] - prev[0]),
                max(0, total[1] - prev[1]),
                max(0, total[2] - prev[2]),
                max(0, total[3] - prev[3]),
                max(0, total[4] - prev[4]),
            )
        if total is not None:
            self.prev_total = total
        if usage is None or not any(usage):
            return False
        if ts is not None:
            if (ts, model, usage) in self.counted_events:
                return False
            self.counted_events.add((ts, model, usage))
        inp, cached, cache_write, out, _reasoning = usage
        u = self.usage
        self.usage = (u[0] + inp - cached - cache_write, u[1] + out, u[2] + cached, u[3] + cache_write)
        return True


def output_exit_code(output: Any) -> int | None:
    """Exit code recorded in a function_call_output, for the versions that put it there."""
    if isinstance(output, dict):
        meta = output.get("metadata")
        code = meta.get("exit_code") if isinstance(meta, dict) else None
        return code if isinstance(code, int) and not isinstance(code, bool) else None
    if not isinstance(output, str):
        return None
    head = output[:2048].lstrip()
    if head.startswith("{"):
        try:
            parsed = orjson.loads(output)
        except orjson.JSONDecodeError:
            return None
        return output_exit_code(parsed) if isinstance(parsed, dict) else None
    if head.startswith("Exit code: "):
        return _leading_int(head[len("Exit code: ") :])
    marker = head.find("Process exited with code ")
    if marker >= 0:
        return _leading_int(head[marker + len("Process exited with code ") :])
    return None


def output_body(output: Any) -> str:
    """What a command printed, from a function_call_output (its `Output:` section, or the JSON form's
    `output`), the tail kept."""
    if isinstance(output, str) and output.lstrip().startswith("{"):
        with contextlib.suppress(orjson.JSONDecodeError):
            output = orjson.loads(output)
    if isinstance(output, dict):
        output = output.get("output")
    if not isinstance(output, str):
        return ""
    marker = output.find("Output:\n")
    return (output[marker + len("Output:\n") :] if marker >= 0 else output)[-MAX_OUTPUT_CHARS:]


def _leading_int(text: str) -> int | None:
    digits = ""
    for ch in text:
        if ch.isdigit() or (ch == "-" and not digits):
            digits += ch
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return None


class Reader:
    """Reads one rollout (either format) into keyed SessionStats, resumably: the state survives between
    reads (it is cached), so a later read continues at the byte where this one stopped. Never raises."""

    def __init__(self, path: str, mtime: float) -> None:
        self.st = SessionStats(path=path, mtime=mtime)
        self.ws: Workspace | None = None  # set for the duration of a read only
        self.first = True
        self.cwd: str | None = None
        self.has_user_events = False
        self.event_prompts: dict[str, tuple[datetime | None, str]] = {}
        self.item_prompts: dict[str, tuple[datetime | None, str]] = {}
        self.scripts: dict[str, str | None] = {}
        self.call_tools: dict[str, str] = {}
        self.tokens = TokenCounter()
        self.model: str | None = None
        self.header_ts: Any = None
        self.n = 0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "ws": None}

    def read(self, ws: Workspace, start: int = 0, pos: list[int] | None = None) -> None:
        self.ws = ws
        try:
            for lineno, obj in read_objects(self.st.path, self.st.skipped, start=start, pos=pos):
                self.line(lineno, obj, self.first)
                self.first = False
                if self.st.in_workspace is False:
                    break  # another workspace's session: nothing more to read here
        finally:
            self.ws = None

    def note_cwd(self, cwd: Any) -> None:
        if not isinstance(cwd, str) or not cwd:
            return
        self.cwd = cwd
        assert self.ws is not None
        if self.st.in_workspace is None:  # the session's working directory is where it started
            self.st.in_workspace = self.ws.contains(cwd)

    def call_key(self, call_id: Any, lineno: int) -> str:
        """Keys are per file: nothing is copied between rollouts, and call ids need not be global."""
        if isinstance(call_id, str) and call_id:
            return f"{self.st.path}#{call_id}"
        self.n += 1
        return f"{self.st.path}:{lineno}:{self.n}"

    def line(self, lineno: int, obj: dict[str, Any], first: bool) -> None:
        kind = obj.get("type")
        if "payload" in obj and isinstance(kind, str) and kind in TOP_TYPES:
            payload = obj["payload"]
            if not isinstance(payload, dict):
                self.st.skipped["bad_field"] += 1
                return
            raw_ts = obj.get("timestamp")
            self.st.seen(raw_ts)
            if kind == "session_meta":
                if not self.st.session_id and isinstance(payload.get("id"), str):
                    self.st.session_id = payload["id"]
                self.note_cwd(payload.get("cwd"))
            elif kind == "turn_context":
                self.note_cwd(payload.get("cwd"))
                if isinstance(payload.get("model"), str):
                    self.model = payload["model"]
            elif kind == "response_item":
                self.item(payload, lineno, raw_ts)
            elif kind == "event_msg":
                self.event(payload, lineno, raw_ts)
            return
        if "payload" not in obj and isinstance(kind, str) and kind in ITEM_TYPES:
            self.item(obj, lineno, self.header_ts)
            return
        if first and kind is None and ("id" in obj or "instructions" in obj):
            if isinstance(obj.get("id"), str):
                self.st.session_id = obj["id"]
            self.header_ts = obj.get("timestamp")
            self.st.seen(self.header_ts)
            self.note_cwd(obj.get("cwd"))
            return
        if kind is None and obj.get("record_type") == "state":
            return
        self.st.skipped["unknown_type"] += 1

    def item(self, item: dict[str, Any], lineno: int, ts: Any) -> None:
        kind = item.get("type")
        if kind == "message":
            if item.get("role") == "user":
                self.user_item(item.get("content"), lineno, ts)
            elif item.get("role") == "assistant":
                self.st.ends_on_error = None  # the agent answered after whatever failed
                content = item.get("content")
                if isinstance(content, list):
                    texts = [b.get("text") for b in content if isinstance(b, dict) and b.get("type") == "output_text"]
                    self.st.said(ts, "\n".join(t for t in texts if isinstance(t, str)))
        elif kind == "function_call":
            self.function_call(item, lineno)
        elif kind == "custom_tool_call":
            name = item.get("name")
            name = name if isinstance(name, str) and name else "unknown"
            key = self.call_key(item.get("call_id"), lineno)
            self.tool(key, name)
            if name == "apply_patch" and isinstance(item.get("input"), str):
                self.files(key, patch_files(item["input"]))
        elif kind == "local_shell_call":
            action = item.get("action")
            command = action.get("command") if isinstance(action, dict) else None
            key = self.call_key(item.get("call_id") or item.get("id"), lineno)
            self.shell(key, shell_script(command))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            code = output_exit_code(item.get("output"))
            key = self.call_key(item.get("call_id"), lineno) if code is not None else ""
            if code is not None:
                self.ran(key, None, code, item.get("output"), ts, output_body)
            if code is not None and code != 0:
                tool = self.call_tools.get(key, "unknown")
                name = command_key(self.scripts.get(key)) if tool == "shell" else tool
                self.st.failures[key] = name
                self.st.ends_on_error = name
            elif code == 0:
                self.st.ends_on_error = None

    def user_item(self, content: Any, lineno: int, ts: Any) -> None:
        if isinstance(content, str):
            texts = [content]
        elif isinstance(content, list):
            texts = [
                b["text"]
                for b in content
                if isinstance(b, dict) and b.get("type") in ("input_text", "text") and isinstance(b.get("text"), str)
            ]
        else:
            self.st.skipped["bad_field"] += 1
            return
        kept: list[str] = []
        for text in texts:
            text = text.strip()
            if text.startswith("<environment_context>"):
                start, end = text.find("<cwd>"), text.find("</cwd>")
                if 0 <= start < end:
                    self.note_cwd(text[start + 5 : end].strip())
            elif text and not text.startswith(INJECTED_PREFIXES):
                kept.append(text)
        if kept:
            self.item_prompts[f"{self.st.path}:{lineno}"] = (parse_ts(ts), "\n".join(kept)[:MAX_PROMPT_CHARS])

    def function_call(self, item: dict[str, Any], lineno: int) -> None:
        name = item.get("name")
        name = name if isinstance(name, str) and name else "unknown"
        key = self.call_key(item.get("call_id"), lineno)
        raw = item.get("arguments")
        args: Any = raw
        if isinstance(raw, str):
            try:
                args = orjson.loads(raw)
            except orjson.JSONDecodeError:
                args = raw if name == "apply_patch" else None  # freeform apply_patch sends the patch itself
        if name in SHELL_TOOLS:
            command = None
            if isinstance(args, dict):
                command = args.get("command", args.get("cmd"))
            self.shell(key, shell_script(command))
        elif name == "apply_patch":
            patch = args.get("input", args.get("patch")) if isinstance(args, dict) else args
            self.tool(key, name)
            if isinstance(patch, str):
                self.files(key, patch_files(patch))
        else:
            self.tool(key, name)

    def shell(self, key: str, script: str | None) -> None:
        """A shell call; one that pipes a patch into apply_patch counts as apply_patch."""
        if script and ("*** Begin Patch" in script or script.lstrip().startswith("apply_patch")):
            self.tool(key, "apply_patch")
            self.files(key, patch_files(script))
        else:
            self.tool(key, "shell")
        self.scripts[key] = script

    def ran(self, key: str, script: str | None, code: int, output: Any, ts: Any, body: Callable[[Any], str]) -> None:
        """A shell command's outcome (reported by an output item and an end event alike: the last one stands)."""
        script = script or self.scripts.get(key)
        if not script or self.call_tools.get(key, "shell") != "shell":
            return
        assert self.ws is not None
        text = body(output) if code != 0 else ""
        old = self.st.runs.get(key)
        if old is not None and not text:
            text = old.output
        if old is not None:  # the second report of the same call: its target is known
            target = old.target
        else:
            target = sys.intern(command_target(script, self.ws.relative(self.cwd) if self.cwd else None))
        stamp = ts if isinstance(ts, str) else None
        command = script[:MAX_COMMAND_CHARS] if code != 0 else ""  # a passing run is kept by its target alone
        self.st.runs[key] = Run(target, command, code == 0, stamp, text)

    def tool(self, key: str, name: str) -> None:
        self.st.tool_calls[key] = name
        self.call_tools[key] = name

    def files(self, key: str, paths: list[str]) -> None:
        assert self.ws is not None
        rel = [r for r in (self.ws.relative(p, self.cwd) for p in paths) if r]
        if rel:
            self.st.files[key] = rel

    def event(self, payload: dict[str, Any], lineno: int, ts: Any) -> None:
        kind = payload.get("type")
        if kind == "user_message":
            message = payload.get("message")
            if isinstance(message, str):
                text = message.strip()
                if text and not text.startswith(INJECTED_PREFIXES):
                    self.event_prompts[f"{self.st.path}:{lineno}"] = (parse_ts(ts), text[:MAX_PROMPT_CHARS])
                    self.st.ends_interrupted = False
                    self.st.ends_on_error = None
            self.has_user_events = True  # the current format, even when this text was injected
        elif kind == "turn_aborted":
            self.st.interruptions[f"{self.st.path}:{lineno}"] = ts if isinstance(ts, str) else ""
            self.st.ends_interrupted = True
        elif kind in ("agent_message", "task_complete"):
            self.st.ends_on_error = None
            self.st.said(ts, payload.get("message") if kind == "agent_message" else payload.get("last_agent_message"))
        elif kind == "token_count":
            info = payload.get("info")
            if info is None:
                return
            if not isinstance(info, dict):
                self.st.skipped["bad_field"] += 1
                return
            total, last = info.get("total_token_usage"), info.get("last_token_usage")
            if (total is not None and not isinstance(total, dict)) or (last is not None and not isinstance(last, dict)):
                self.st.skipped["bad_field"] += 1
            if isinstance(ts, str) and ts:  # as ccusage: an event without a time is not counted
                self.tokens.count(ts, self.model, *token_usages(info))
        elif kind == "exec_command_end":
            code = payload.get("exit_code")
            if isinstance(code, int) and not isinstance(code, bool):
                key = self.call_key(payload.get("call_id"), lineno)
                self.ran(key, shell_script(payload.get("command")), code, payload, ts, _event_output)
            if isinstance(code, int) and not isinstance(code, bool) and code != 0:
                script = shell_script(payload.get("command")) or self.scripts.get(key)
                self.st.failures[key] = command_key(script)
                self.st.ends_on_error = self.st.failures[key]
            elif code == 0:
                self.st.ends_on_error = None

    def result(self) -> SessionStats:
        """The file's stats so far; reading may go on afterwards (nothing here is consumed)."""
        st = self.st
        # The current format writes each prompt twice (response_item and event_msg user_message), the
        # older one only as a response_item: take the events when there are any.
        st.prompts = self.event_prompts if self.has_user_events else self.item_prompts
        usage = self.tokens.usage
        st.usage.pop(f"{st.path}#usage", None)
        if any(usage):
            st.usage[f"{st.path}#usage"] = usage
        if not st.session_id:
            st.session_id = os.path.splitext(os.path.basename(st.path))[0]
        return st


def _event_output(payload: Any) -> str:
    """What an `exec_command_end` event says the command printed."""
    if not isinstance(payload, dict):
        return ""
    for key in ("aggregated_output", "formatted_output"):
        if isinstance(payload.get(key), str) and payload[key]:
            return str(payload[key])[-MAX_OUTPUT_CHARS:]
    parts = [payload.get(k) for k in ("stdout", "stderr")]
    return "\n".join(p for p in parts if isinstance(p, str) and p)[-MAX_OUTPUT_CHARS:]


def parse_file(path: str, mtime: float, ws: Workspace) -> SessionStats:
    """Reads one whole rollout (either format) into keyed SessionStats; never raises."""
    reader = Reader(path, mtime)
    reader.read(ws)
    return reader.result()
