"""Claude Code transcripts: `<claude_dir>/projects/<project>/**/*.jsonl`, one file per session or subagent.

The project directory name is a lossy encoding of the cwd, so it is never decoded: a session belongs to
the workspace when a `cwd` recorded in its lines is the repo or inside it. Subagent transcripts
(`<session>/subagents/agent-*.jsonl`) carry their parent's `sessionId` and count toward that session.

Usage is counted the way ccusage counts it: Claude Code writes one API response as several lines that
share `message.id` + `requestId`; each response is counted once (the last line written for it, which
carries the final usage), also when the same response reappears in another file.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from typing import Any

from orchestration.models import parse_ts
from orchestration.sessions._common import (
    MAX_COMMAND_CHARS,
    MAX_PROMPT_CHARS,
    Run,
    SessionStats,
    Usage,
    Workspace,
    as_float,
    as_int,
    command_key,
    command_names,
    list_jsonl,
    output_text,
    read_objects,
    usage_wins,
)

# Line types written by Claude Code that we recognise; anything else is a newer format → `unknown_type`.
KNOWN_TYPES = frozenset(
    {
        "user",
        "assistant",
        "system",
        "summary",
        "attachment",
        "queue-operation",
        "file-history-snapshot",
        "progress",
        "custom-title",
        "agent-name",
        "last-prompt",
        "tag",
        "pr-link",
    }
)
FILE_TOOLS = frozenset({"Read", "Edit", "Write", "MultiEdit", "NotebookEdit"})
FILE_KEYS = ("file_path", "notebook_path", "path")
# User-line text that Claude Code injects (slash commands, hooks, reminders, interruptions, compaction):
# not something the person asked for.
INJECTED_PREFIXES = (
    "<command-",
    "<local-command",
    "<system-reminder>",
    "Caveat:",
    "[Request interrupted",
    "<bash-input>",
    "<bash-stdout>",
    "<bash-stderr>",
    "<user-prompt-submit-hook>",
    "This session is being continued from a previous conversation",
    "<task-notification>",  # a background agent's end, queued by Claude Code for the model to answer
)
INTERRUPTED = "[Request interrupted by user"
# Big, irrelevant line types recognised without parsing (Claude Code writes `type` first).
_SKIP_PREFIXES = (b'{"type":"file-history-snapshot"',)


def find_files(claude_dir: str, skipped: Counter[str]) -> list[tuple[str, float]]:
    """Every `*.jsonl` nested in a project directory (sessions, subagents), with its mtime."""
    projects = os.path.join(claude_dir, "projects")
    return list_jsonl(projects, skipped, accept=lambda dirpath, _name: dirpath != projects)


def session_key(path: str) -> str:
    """The session a file belongs to, judged from its path alone (used before parsing, for the limit)."""
    parent = os.path.dirname(path)
    if os.path.basename(parent) == "subagents":
        return os.path.basename(os.path.dirname(parent))
    return os.path.splitext(os.path.basename(path))[0]


def prompt_text(content: Any) -> tuple[str, bool]:
    """The real prompt in a user message (or ""), and whether the message carries tool results."""
    if isinstance(content, str):
        texts = [content]
    elif isinstance(content, list):
        texts = []
        for block in content:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "tool_result":
                return "", True
            if kind == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
    else:
        return "", False
    kept = [t.strip() for t in texts]
    return "\n".join(t for t in kept if t and not t.startswith(INJECTED_PREFIXES)), False


class Reader:
    """Reads one transcript into keyed SessionStats, resumably: the state survives between reads (it is
    cached), so a later read continues at the byte where this one stopped. Never raises."""

    def __init__(self, path: str, mtime: float) -> None:
        self.st = SessionStats(path=path, mtime=mtime)
        self.cwd: str | None = None
        # tool_use id -> the name its failure is reported under (Bash calls: their command)
        self.failure_names: dict[str, str] = {}
        # Bash tool_use id -> (target, command) until its result arrives
        self.commands: dict[str, tuple[str, str]] = {}

    def read(self, ws: Workspace, start: int = 0, pos: list[int] | None = None) -> None:
        st = self.st
        tool_names = self.failure_names
        cwd = self.cwd
        for lineno, obj in read_objects(st.path, st.skipped, skip=_skip_fast, start=start, pos=pos):
            kind = obj.get("type")
            if not isinstance(kind, str) or kind not in KNOWN_TYPES:
                st.skipped["unknown_type"] += 1
                continue
            line_cwd = obj.get("cwd")
            if isinstance(line_cwd, str) and line_cwd and line_cwd != cwd:
                cwd = line_cwd
                if st.in_workspace is None:
                    # The session's working directory is where it started: the first cwd decides.
                    st.in_workspace = ws.contains(line_cwd)
                    if not st.in_workspace:
                        break  # another workspace's session: nothing more to read here
            st.seen(obj.get("timestamp"))
            if kind == "assistant":
                _assistant(st, obj, lineno, tool_names, ws, cwd, self.commands)
            elif kind == "user":
                _user(st, obj, lineno, tool_names, self.commands)
            elif "costUSD" in obj:
                cost = as_float(obj.get("costUSD"))
                if cost is not None:
                    st.cost[f"{st.path}:{lineno}"] = cost
        self.cwd = cwd

    def result(self) -> SessionStats:
        # The session is named by the file (as ccusage names it): a resumed session's new file is its own.
        self.st.session_id = session_key(self.st.path)
        return self.st


def parse_file(path: str, mtime: float, ws: Workspace) -> SessionStats:
    """Reads one whole transcript into keyed SessionStats; never raises (problems land in `skipped`)."""
    reader = Reader(path, mtime)
    reader.read(ws)
    return reader.result()


def _assistant(
    st: SessionStats,
    obj: dict[str, Any],
    lineno: int,
    tool_names: dict[str, str],
    ws: Workspace,
    cwd: str | None,
    commands: dict[str, tuple[str, str]],
) -> None:
    msg = obj.get("message")
    if not isinstance(msg, dict):
        st.skipped["bad_field"] += 1
        return
    key = _response_key(st, obj, msg, lineno)
    usage = msg.get("usage")
    if isinstance(usage, dict):
        split = usage.get("cache_creation")
        # As ccusage counts it: the 5m + 1h split when Claude Code wrote one (even an empty one).
        cache_write = (
            as_int(split.get("ephemeral_5m_input_tokens")) + as_int(split.get("ephemeral_1h_input_tokens"))
            if isinstance(split, dict)
            else as_int(usage.get("cache_creation_input_tokens"))
        )
        counted: Usage = (
            as_int(usage.get("input_tokens")),
            as_int(usage.get("output_tokens")),
            as_int(usage.get("cache_read_input_tokens")),
            cache_write,
        )
        side = obj.get("isSidechain") is True
        old = st.usage.get(key)
        if old is None or usage_wins(counted, side, old, key in st.sidechain_usage):
            st.usage[key] = counted
            if side:
                st.sidechain_usage.add(key)
            else:
                st.sidechain_usage.discard(key)
    elif usage is not None:
        st.skipped["bad_field"] += 1
    if "costUSD" in obj:
        cost = as_float(obj.get("costUSD"))
        if cost is not None:
            st.cost[key] = cost
    content = msg.get("content")
    if not isinstance(content, list):
        if content is not None and not isinstance(content, str):
            st.skipped["bad_field"] += 1
        return
    for i, block in enumerate(content):
        if isinstance(block, dict) and block.get("type") == "text" and block.get("text"):
            st.ends_on_error = None  # the agent answered after whatever failed
            if obj.get("isSidechain") is not True:
                st.said(obj.get("timestamp"), block["text"])
        if not isinstance(block, dict) or block.get("type") != "tool_use":
            continue
        name = block.get("name")
        name = name if isinstance(name, str) and name else "unknown"
        bid = block.get("id")
        tkey = bid if isinstance(bid, str) and bid else f"{st.path}:{lineno}:{i}"
        st.tool_calls[tkey] = name
        tool_names[tkey] = name
        if name == "Bash":
            inp = block.get("input")
            command = inp.get("command") if isinstance(inp, dict) else None
            # Failures of Bash are named by their command (`pytest`, `git push`), as Codex's are.
            script = command if isinstance(command, str) else None
            if script:
                key, target = command_names(script, ws.relative(cwd) if cwd else None)
                tool_names[tkey] = key
                commands[tkey] = (sys.intern(target), script[:MAX_COMMAND_CHARS])
            else:
                tool_names[tkey] = command_key(None)
        if name in FILE_TOOLS:
            inp = block.get("input")
            if isinstance(inp, dict):
                for k in FILE_KEYS:
                    value = inp.get(k)
                    if isinstance(value, str) and value:
                        rel = ws.relative(value, cwd)
                        if rel:
                            st.files[tkey] = [rel]
                        break


def _response_key(st: SessionStats, obj: dict[str, Any], msg: dict[str, Any], lineno: int) -> str:
    """One API response, as ccusage identifies it: message id + request id; without a request id, message
    id + session; without a message id, the line itself (never deduplicated)."""
    mid, rid = msg.get("id"), obj.get("requestId")
    if not isinstance(mid, str) or not mid:
        return f"{st.path}:{lineno}"
    if isinstance(rid, str) and rid:
        return f"{mid}:{rid}"
    sid = obj.get("sessionId")
    return f"{mid}:~{sid if isinstance(sid, str) and sid else session_key(st.path)}"


def _user(
    st: SessionStats,
    obj: dict[str, Any],
    lineno: int,
    tool_names: dict[str, str],
    commands: dict[str, tuple[str, str]],
) -> None:
    msg = obj.get("message")
    if not isinstance(msg, dict):
        st.skipped["bad_field"] += 1
        return
    content = msg.get("content")
    if isinstance(content, list):
        for i, block in enumerate(content):
            if not isinstance(block, dict):
                continue
            if block.get("type") != "tool_result":
                continue
            failed = block.get("is_error") is True
            tuid = block.get("tool_use_id")
            ran = commands.pop(tuid, None) if isinstance(tuid, str) else None
            if ran is not None and isinstance(tuid, str):
                stamp = obj.get("timestamp")
                output = output_text(block.get("content")) if failed else ""
                command = ran[1] if failed else ""  # a passing run is kept by its target alone (memory)
                st.runs[tuid] = Run(ran[0], command, not failed, stamp if isinstance(stamp, str) else None, output)
            if failed:
                name = tool_names.get(tuid, "unknown") if isinstance(tuid, str) else "unknown"
                st.failures[tuid if isinstance(tuid, str) and tuid else f"{st.path}:{lineno}:{i}"] = name
                st.ends_on_error = name
            else:
                st.ends_on_error = None
    elif not isinstance(content, str):
        st.skipped["bad_field"] += 1
        return
    # Subagent prompts come from Claude, meta lines and compaction summaries from Claude Code itself, and so
    # do the lines it queues on its own (`promptSource: "system"`: a background agent's `<task-notification>`).
    if obj.get("isMeta") is True or obj.get("isSidechain") is True or obj.get("isCompactSummary") is True:
        return
    if obj.get("promptSource") == "system":
        return
    uid = obj.get("uuid")
    key = uid if isinstance(uid, str) and uid else f"{st.path}:{lineno}"
    if _interrupted(content):
        stamp = obj.get("timestamp")
        st.interruptions[key] = stamp if isinstance(stamp, str) else ""
        st.ends_interrupted = True
        return
    text, has_tool_result = prompt_text(content)
    if has_tool_result or not text:
        return
    st.prompts[key] = (parse_ts(obj.get("timestamp")), text[:MAX_PROMPT_CHARS])
    st.ends_interrupted = False
    st.ends_on_error = None


def _interrupted(content: Any) -> bool:
    """Claude Code's marker line when the person pressed Esc: "[Request interrupted by user…]"."""
    if isinstance(content, str):
        return content.startswith(INTERRUPTED)
    if isinstance(content, list):
        return any(
            isinstance(b, dict) and isinstance(b.get("text"), str) and b["text"].startswith(INTERRUPTED)
            for b in content
        )
    return False


def _skip_fast(raw: bytes) -> bool:
    return raw.startswith(_SKIP_PREFIXES)
