"""Scripted sessions for the decision benchmark: Claude Code transcripts and Codex rollouts with given content.

The line shapes are the analyze benchmark's (`benchmarks.analyze.generate`, copied from the real sessions
recorded in `tests/fixtures/sessions`: Claude Code 2.1.328 and Codex 0.169.0, plus the older Claude Code
2.0.x and Codex 0.5x formats): the same line builders, key orders, API responses with their usage, session
headers and token accounting. What a scenario sets is the content: what the person asked, which files the
agent read and edited, which commands it ran, what they printed and how they exited, what the agent said last.

Tool results are written as the recorded ones are: a failed Claude Code `Bash` call is its `tool_use` and a
user `tool_result` with `"is_error": true` and content `"Exit code N\\n<output>"`; a failed Codex command is
its `exec_command` call, an `item_completed` CommandExecution with the exit code and `aggregated_output`, and a
`function_call_output` "…Process exited with code N…Output:…" (0.16x), or its `shell_command` call, an
`"Exit code: N…"` output and an `exec_command_end` event (0.5x).
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from benchmarks.analyze.generate import (
    ClaudeSession,
    Clock,
    CodexSession,
    Generator,
    Out,
    Project,
    Stats,
    _tok,
    _uuid,
    encode_cwd,
    iso,
)
from benchmarks.decide.records import SessionInfo

DAY = 86400.0
# Line kinds of the newest CLIs that a reader may not know (see History.newer_lines).
NEWER_KINDS = frozenset(
    {
        "api-request",
        "api-request-blob",
        "api-request-shape",
        "tools-used",
        "atis-latch",
        "cost-state",
        "world_state",
        "token_usage_record",
    }
)


EDIT_NOTE = "(file state is current in your context \u2014 no need to Read it back)"


class Session(Protocol):
    """What a scenario does in a session, whichever CLI wrote it."""

    def ask(self, text: str) -> None: ...
    def say(self, text: str) -> None: ...
    def interrupt(self) -> None: ...
    def read(self, path: str, note: str | None = None) -> None: ...
    def edit(self, path: str, old: str, new: str, note: str | None = None) -> None: ...
    def command(
        self, command: str, output: str, code: int = 0, note: str | None = None, desc: str | None = None
    ) -> None: ...
    def cut_off(self) -> None: ...


def history_generator(base: Generator, root: Path, seed: str) -> Generator:
    """The analyze generator's state for one history: its text pools and boilerplate shared with `base`, its
    own random stream, output directories and line statistics."""
    g = copy.copy(base)
    g.rng = random.Random(seed)
    g.out_dir = root
    g.claude_dir = root / "claude"
    g.codex_dir = root / "codex"
    g.stats = Stats()
    return g


def _numbered(text: str) -> str:
    """A Read result as Claude Code shows it to the model: right-aligned line numbers and an arrow."""
    return "".join(f"{i:>6}\u2192{line}\n" for i, line in enumerate(text.splitlines(), 1))


def _apply(path: Path, old: str, new: str) -> str:
    """Applies an edit to the repository tree (the tree is what the history left behind); the old text."""
    text = path.read_text() if path.exists() else ""
    if old and old in text:
        path.write_text(text.replace(old, new, 1))
    return text


class Script:
    """What both writers share: where the session is, and what it wrote (for the history's record)."""

    provider: str = ""

    def setup(self, repo: Path, cwd: Path, start: float, base: Path | None) -> None:
        self.repo = repo
        self.base = base or repo  # the project the session's file paths are relative to
        self.workdir = cwd
        self.started = start
        self.in_workspace = cwd == repo or repo in cwd.parents
        self.prompts = 0
        self.failed = 0
        self.planted: Counter[str] = Counter()
        self.closed = False

    def abs(self, path: str) -> str:
        return str(self.base / path)

    def rel(self, path: str) -> str:
        """`path` (relative to the project) as a command run in the session's directory names it."""
        full = self.base / path
        try:
            return str(full.relative_to(self.workdir))
        except ValueError:
            return str(full)

    def info(self, out: Out, root: Path, fmt: str) -> SessionInfo:
        return SessionInfo(
            provider="claude-code" if self.provider == "claude-code" else "codex",
            format=fmt,
            path=str(out.path.relative_to(root)),
            cwd=str(self.workdir),
            in_workspace=self.in_workspace,
            started=iso(self.started),
            ended=iso(out.last_t or self.started),
            prompts=self.prompts,
            failures=self.failed,
        )


class ClaudeScript(ClaudeSession, Script):
    """A Claude Code session, newest format (2.1.328) unless `legacy` (2.0.55)."""

    provider = "claude-code"

    def __init__(
        self, g: Generator, repo: Path, cwd: Path, start: float, legacy: bool = False, base: Path | None = None
    ) -> None:
        clock = Clock(g.rng, g.now)
        clock.t = start
        session_id = _uuid(g.rng)
        out = Out(g.claude_dir / "projects" / encode_cwd(str(cwd)) / f"{session_id}.jsonl", g.stats)
        ClaudeSession.__init__(self, g, Project(str(cwd), [], False), 0, session_id, out, clock=clock)
        self.setup(repo, cwd, start, base)
        self.modern = not legacy
        self.version = "2.0.55" if legacy else "2.1.328"
        self.model = "claude-sonnet-4-5-20250929" if legacy else "claude-opus-5-5"
        self.hooks = False
        self.branch = "main"

    # -- what the person does

    def ask(self, text: str) -> None:
        self.prompt(text)
        self.prompts += 1

    def interrupt(self) -> None:
        """The person pressed Esc while the model was answering."""
        self.user([{"type": "text", "text": "[Request interrupted by user]"}])

    # -- what the agent does

    def say(self, text: str) -> None:
        """The model's answer, which ends its turn."""
        self.assistant_response([{"type": "text", "text": text}], "end_turn")
        if self.modern:
            last = {"type": "last-prompt", "lastPrompt": self.prompt_text, "leafUuid": self.parent}
            self.write({**last, "sessionId": self.session_id}, None)

    def read(self, path: str, note: str | None = None) -> None:
        full = self.abs(path)
        text = Path(full).read_text()
        n = text.count("\n")
        file = {"filePath": full, "content": text, "numLines": n, "startLine": 1, "totalLines": n}
        tur = {"type": "text", "file": file}
        self._call("Read", {"file_path": full}, _numbered(text), tur, note)

    def edit(self, path: str, old: str, new: str, note: str | None = None) -> None:
        full = self.abs(path)
        original = _apply(Path(full), old, new)
        inp: dict[str, Any] = {"file_path": full, "old_string": old, "new_string": new}
        if self.modern:
            inp = {"replace_all": False, **inp}
            text = f"The file {full} has been updated successfully. {EDIT_NOTE}"
        else:
            text = f"The file {full} has been updated. Here's the result of running `cat -n` on a snippet:\n"
            text += _numbered(new)
        start = original[: original.find(old)].count("\n") + 1 if old in original else 1
        hunk = {
            "oldStart": start,
            "oldLines": old.count("\n") + 1,
            "newStart": start,
            "newLines": new.count("\n") + 1,
            "lines": ["-" + x for x in old.splitlines()] + ["+" + x for x in new.splitlines()],
        }
        tur: dict[str, Any] = {"filePath": full, "oldString": old, "newString": new, "originalFile": original}
        tur |= {"structuredPatch": [hunk], "userModified": False, "replaceAll": False}
        self._call("Edit", inp, text, tur, note)
        self._track(full)
        self.snapshot(update=True)

    def command(
        self, command: str, output: str, code: int = 0, note: str | None = None, desc: str | None = None
    ) -> None:
        """A Bash call; a non-zero `code` is written as Claude Code writes a failed command."""
        inp = {"command": command, "description": desc or f"Run {command[:60]}"}
        if code:
            text = f"Exit code {code}\n{output}"
            self.failed += 1
            self._call("Bash", inp, text, f"Error: {text}", note, error=True)
        else:
            tur = {"stdout": output, "stderr": "", "interrupted": False, "isImage": False, "noOutputExpected": False}
            self._call("Bash", inp, output, tur, note)

    def _call(
        self, name: str, inp: dict[str, Any], content: str, tur: Any, note: str | None, error: bool = False
    ) -> None:
        tid = "toolu_01" + _tok(self.rng, 22)
        block = {"type": "tool_use", "id": tid, "name": name, "input": inp}
        blocks: list[dict[str, Any]] = [{"type": "text", "text": note}, block] if note else [block]
        self.counts["tool_calls"] += 1
        self.assistant_response(blocks, "tool_use")
        assistant_uuid = self.parent
        # Key order as recorded: a failed result starts with its type, a Bash result says is_error either way.
        if error:
            res: dict[str, Any] = {"type": "tool_result", "content": content, "is_error": True, "tool_use_id": tid}
        else:
            res = {"tool_use_id": tid, "type": "tool_result", "content": content}
            if name == "Bash":
                res["is_error"] = False
        extra: dict[str, Any] = {"toolUseResult": tur}
        if name == "Bash":
            extra["sandboxed"] = False
        if self.version >= "2.1":
            extra["sourceToolAssistantUUID"] = assistant_uuid
        if self.modern:
            reason = "subcommandResults" if name == "Bash" else "mode"
            extra["permissionDecision"] = {"decision": "accept", "source": "config", "reasonType": reason}
        self.user([res], **extra)

    # -- broken on purpose

    def crash_line(self) -> None:
        """A line cut short by a crash, after which the session went on (counted as `malformed_line`)."""
        self.out.raw(b'{"parentUuid":null,"isSidechain":false,"type":"assistant","message":{"id":"msg_01\n')
        self.planted["malformed_line"] += 1

    def cut_off(self) -> None:
        """A last line without its newline: the file is still being written (`incomplete_line`). Closes."""
        self.out.raw(b'{"parentUuid":"' + (self.parent or "").encode() + b'","isSidechain":false,"type":"user","mess')
        self.planted["incomplete_line"] += 1
        self.close_file()

    def close_file(self) -> SessionInfo:
        if not self.closed:
            if self.modern and not self.planted["incomplete_line"]:
                self.cost_state()
            self.out.close()
            self.closed = True
        return self.info(self.out, self.g.out_dir, self.version)


class CodexScript(CodexSession, Script):
    """A Codex rollout, newest format (0.169.0) unless `legacy` (0.58.0)."""

    provider = "codex"

    def __init__(
        self, g: Generator, repo: Path, cwd: Path, start: float, legacy: bool = False, base: Path | None = None
    ) -> None:
        # Not CodexSession.__init__: that one picks its own start (and opens its file there).
        rng = g.rng
        self.g = g
        self.rng = rng
        self.project = Project(str(cwd), [], False)
        self.budget = 0
        self.old = False
        self.session_id = _uuid(rng)
        self.clock = Clock(rng, g.now)
        self.clock.t = start
        begun = datetime.fromtimestamp(start, UTC)
        name = f"rollout-{begun.strftime('%Y-%m-%dT%H-%M-%S')}-{self.session_id}.jsonl"
        self.out = Out(g.codex_dir / "sessions" / begun.strftime("%Y/%m/%d") / name, g.stats)
        self.modern = not legacy
        self.version = "0.58.0" if legacy else "0.169.0"
        self.model = "gpt-5-codex" if legacy else "gpt-5.5"
        self.total = {"input_tokens": 0, "cached_input_tokens": 0, "output_tokens": 0, "reasoning_output_tokens": 0}
        self.turn_total = dict(self.total)
        self.ordinal = 0
        self.turn_id = ""
        self.sequence = 0
        self.context = rng.randrange(6_000, 14_000)
        self.counts: Counter[str] = Counter()
        self.setup(repo, cwd, start, base)
        self.in_turn = False
        if self.modern:
            self.modern_header()
        else:
            self.header()

    # -- what the person does

    def ask(self, text: str) -> None:
        if self.in_turn:
            raise RuntimeError("the previous turn has not ended: say() or interrupt() first")
        if self.modern:
            self.modern_turn_open(text)
        else:
            self.turn_open(text)
        self.prompts += 1
        self.in_turn = True

    def interrupt(self) -> None:
        """The person pressed Esc: the turn is aborted."""
        self.event({"type": "turn_aborted", "turn_id": self.turn_id, "reason": "interrupted"})
        self.in_turn = False

    # -- what the agent does

    def say(self, text: str) -> None:
        if self.modern:
            self.modern_turn_close(text)
        else:
            self.turn_close(text)
        self.in_turn = False

    def think(self, summary: str) -> None:
        if self.modern:
            self.modern_reasoning(f"**{summary}**")
        else:
            self.reasoning(f"**{summary}**")

    def command(
        self, command: str, output: str, code: int = 0, note: str | None = None, desc: str | None = None
    ) -> None:
        """An exec_command (0.16x) or shell_command (0.5x) call; `desc` is Claude Code's, unused here."""
        if note:
            self.think(note)
        if self.modern:
            self.modern_shell(command, output, code)
        else:
            self.shell(command, output, code)
        self.failed += code != 0
        self.token_count(self.rng.randrange(20, 1500))

    def read(self, path: str, note: str | None = None) -> None:
        """Codex reads files with the shell."""
        text = Path(self.abs(path)).read_text()
        self.command(f"sed -n '1,200p' {self.rel(path)}", text, 0, note)

    def edit(self, path: str, old: str, new: str, note: str | None = None) -> None:
        _apply(Path(self.abs(path)), old, new)
        lines = ["*** Begin Patch", f"*** Update File: {self.rel(path)}", "@@"]
        lines += ["-" + x for x in old.splitlines()] + ["+" + x for x in new.splitlines()]
        patch = "\n".join([*lines, "*** End Patch"]) + "\n"
        if note:
            self.think(note)
        if self.modern:
            self.modern_patch(patch)
        else:
            self.patch(patch)
        self.token_count(self.rng.randrange(20, 1500))

    # -- broken on purpose

    def cut_off(self) -> None:
        """A last line without its newline: the rollout is still being written (`incomplete_line`). Closes."""
        self.out.raw(b'{"timestamp":"' + iso(self.clock.t).encode() + b'","type":"event_msg","payload":{"type":"tok')
        self.planted["incomplete_line"] += 1
        self.close_file()

    def close_file(self) -> SessionInfo:
        if not self.closed:
            self.out.close()
            self.closed = True
        return self.info(self.out, self.g.out_dir, self.version)


def newer_lines(path: Path) -> int:
    """Lines of the newest CLIs' bookkeeping kinds in one file (see NEWER_KINDS)."""
    n = 0
    with path.open("rb") as fh:
        for raw in fh:
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict) and obj.get("type") in NEWER_KINDS:
                n += 1
    return n
