"""A deterministic, realistic corpus of Claude Code transcripts and Codex rollouts for the analyze benchmark.

    python -m benchmarks.analyze.generate OUT_DIR --size-mb 520 [--seed N] [--now ISO]

writes

    OUT_DIR/claude/projects/<encoded-cwd>/<session>.jsonl            (+ <session>/subagents/agent-*.jsonl)
    OUT_DIR/codex/sessions/YYYY/MM/DD/rollout-<ts>-<uuid>.jsonl      (+ a few in archived_sessions/)
    OUT_DIR/manifest.json                                            (what was written, and the true token totals)

split about 70/30 Claude/Codex by bytes. The lines are shaped like the real ones (Claude Code 2.0/2.1,
Codex CLI 0.4x-0.5x plus a few files of the older bare-item format), including what makes real corpora
heavy: tool results that carry whole files (10 KB-2 MB, often twice: in the message and in
`toolUseResult`), `Write` calls carrying the file they write, `Edit` results carrying the original file,
pasted screenshots (base64, 1-5 MB), Codex command outputs echoed in `exec_command_end`, encrypted reasoning.

About 30% of the sessions run inside one workspace (`/home/dev/src/acme-api` and its subdirectories), the
rest across ~40 other projects (one of them the sibling-prefix trap `/home/dev/src/acme-api-client`). All
timestamps lie in the 10 days before `--now` and every file's mtime is its last timestamp, so an analysis
with `since_days=14` at that moment includes everything.

The manifest records the true token totals (each Claude API response once; each Codex session's last
cumulative total, cached input split out of input) for all sessions and for the workspace's sessions, so
that both tools can be checked against the generator and not only against each other.

Generation streams: nothing bigger than one line is held besides a few MB of text pools.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import os
import random
import string
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

FIXED_NOW = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
WORKSPACE = "/home/dev/src/acme-api"
WORKSPACE_SUBDIRS = ("", "", "", "/services/billing", "/services/auth", "/web", "/scripts")
WORKSPACE_SHARE = 0.30
CLAUDE_SHARE = 0.70
SPAN_DAYS = 10

OTHER_PROJECTS = (
    "acme-api-client",  # a sibling whose path starts with the workspace's: must NOT count as inside it
    "acme-web",
    "acme-infra",
    "billing-worker",
    "dotfiles",
    "ml-pipeline",
    "search-indexer",
    "mobile-app",
    "design-system",
    "data-warehouse",
    "auth-gateway",
    "notifications",
    "payments-sdk",
    "cli-tools",
    "docs-site",
    "terraform-modules",
    "k8s-charts",
    "legacy-monolith",
    "analytics-etl",
    "feature-flags",
    "rate-limiter",
    "image-resizer",
    "chat-bot",
    "observability",
    "blog",
    "scratch",
    "interview-prep",
    "rust-playground",
    "go-microservice",
    "react-dashboard",
    "pdf-renderer",
    "email-templates",
    "crm-sync",
    "inventory",
    "geo-service",
    "video-transcoder",
    "ops-runbooks",
    "perf-lab",
    "sandbox",
)
SRC_ROOT = "/home/dev/src"

CLAUDE_VERSIONS = ("2.0.37", "2.0.46", "2.0.55", "2.1.3", "2.1.12", "2.1.31")
CLAUDE_MODELS = ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805")
SUBAGENT_MODEL = "claude-haiku-4-5-20251001"
CODEX_VERSIONS = ("0.46.0", "0.50.0", "0.55.0", "0.58.0")
CODEX_MODELS = ("gpt-5-codex", "gpt-5-codex", "gpt-5")
# The newest CLIs (shapes copied from the recorded sessions in tests/fixtures/sessions: Claude Code 2.1.328,
# Codex 0.169.0); about half of the sessions of each provider are written this way.
MODERN_SHARE = 0.5
CLAUDE_MODERN_VERSIONS = ("2.1.300", "2.1.317", "2.1.328")
CLAUDE_MODERN_MODELS = ("claude-opus-5-5", "claude-opus-5-5", "claude-sonnet-4-5-20250929")
CODEX_MODERN_VERSIONS = ("0.160.0", "0.165.2", "0.169.0")
CODEX_MODERN_MODELS = ("gpt-5.5", "gpt-5.5", "gpt-5.1-codex")
CLAUDE_TOOLS = (
    "Agent",
    "Bash",
    "Edit",
    "Glob",
    "Grep",
    "ListAgents",
    "Read",
    "ReportFindings",
    "ScheduleWakeup",
    "Skill",
    "TodoWrite",
    "ToolSearch",
    "WebFetch",
    "Workflow",
    "Write",
)
DEFERRED_TOOLS = ("CronCreate", "CronDelete", "CronList", "EnterWorktree", "ExitWorktree", "NotebookEdit", "WebSearch")
SKILLS = ("dataviz", "update-config", "keybindings-help", "code-review", "pdf", "xlsx", "docx", "pptx", "security")
BRANCHES = ("main", "main", "main", "feat/retry-queue", "fix/flaky-tests", "chore/deps", "")

ALNUM = string.ascii_letters + string.digits
_WORDS_TEXT = (
    "the parser retry queue cache invoice token user account session handler config test fixture "
    "migration schema endpoint request response timeout worker job batch metric log error field value "
    "index query page client server build deploy branch commit review flaky slow fast memory leak race "
    "lock stream event payload header body status code path file module package import export type check "
    "lint format"
)
WORDS = _WORDS_TEXT.split()
PROMPTS = (
    "Fix the failing test in {f} — it started after the last refactor",
    "Add retries with exponential backoff to the {w} client",
    "Why is {f} so slow? Profile it and make it faster",
    "Refactor {f} so the {w} handling lives in one place",
    "Write unit tests for {f}, cover the error paths",
    "The {w} endpoint returns 500 when the {w} is empty, fix it",
    "Explain how {f} works and where the {w} gets validated",
    "Rename {w} to {w}_id everywhere and update the callers",
    "Add a migration for the new {w} column and backfill it",
    "CI is red on main: {w} tests time out. Investigate",
    "Review my changes in {f} and point out bugs",
    "Implement pagination for the {w} listing",
)
INJECTED = (
    "<command-name>/clear</command-name>\n<command-message>clear</command-message>\n<command-args></command-args>",
    "<local-command-stdout></local-command-stdout>",
    "Caveat: The messages below were generated by the user while running local commands. DO NOT respond to these "
    "messages or otherwise consider them in your response unless the user explicitly asks you to.",
)
CODE_EXT = (".py", ".py", ".py", ".ts", ".tsx", ".go", ".sql", ".md", ".yaml", ".json")
CODE_DIRS = ("src", "src/api", "src/core", "src/db", "tests", "tests/unit", "web/src", "scripts", "docs")
SHELL_CMDS = (
    "pytest -q {f}",
    "python -m pytest -x tests/unit",
    "git status --short",
    "git diff --stat",
    "git log --oneline -20",
    "rg -n '{w}' src",
    "ls -la {d}",
    "sed -n '1,200p' {f}",
    "cat {f}",
    "npm test -- --watch=false",
    "npm run lint",
    "make test",
    "go test ./...",
    "ruff check .",
    "mypy src",
    "docker compose ps",
)


def _tok(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(ALNUM, k=n))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _lognormal(rng: random.Random, median: float, sigma: float, lo: float, hi: float) -> int:
    return int(min(hi, max(lo, rng.lognormvariate(0.0, sigma) * median)))


def iso(t: float) -> str:
    dt = datetime.fromtimestamp(t, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def encode_cwd(cwd: str) -> str:
    """Claude Code's project directory name: every non-alphanumeric character becomes '-'."""
    return "".join(c if c.isalnum() else "-" for c in cwd)


# ------------------------------------------------------------------------------------------- text pools


class Pools:
    """A few MB of code-like text and of base64, sliced to make file contents, outputs and images."""

    def __init__(self, rng: random.Random) -> None:
        lines = [self._code_line(rng) for _ in range(90_000)]
        self.code = "\n".join(lines) + "\n"
        self.offsets = [0]
        for line in lines:
            self.offsets.append(self.offsets[-1] + len(line) + 1)
        numbered = [f"{(i % 99_999) + 1:>6}\u2192{line}" for i, line in enumerate(lines)]
        self.numbered = "\n".join(numbered) + "\n"
        self.noffsets = [0]
        for line in numbered:
            self.noffsets.append(self.noffsets[-1] + len(line) + 1)
        self.b64 = base64.b64encode(rng.randbytes(6 * 1024 * 1024)).decode("ascii")

    @staticmethod
    def _code_line(rng: random.Random) -> str:
        w = rng.choice(WORDS)
        v = rng.choice(WORDS)
        indent = " " * rng.choice((0, 4, 4, 8, 8, 12, 16))
        kind = rng.randrange(14)
        if kind == 0:
            return f"{indent}def {w}_{v}(self, {v}: str, *, timeout: float = 3.0) -> dict[str, Any]:"
        if kind == 1:
            return f'{indent}"""Return the {w} for this {v}; raises {v.title()}Error when it is missing."""'
        if kind == 2:
            return f'{indent}logger.info("{w} %s finished in %.2fs", {v}.id, elapsed)'
        if kind == 3:
            return f"{indent}if {w} is None or not {v}:"
        if kind == 4:
            return f'{indent}return {{"{w}": {v}, \'status\': "ok", "count": len({w}s)}}'
        if kind == 5:
            return f"{indent}const {w}{v.title()} = await fetch(`/api/{w}/${{id}}`, {{ method: 'POST' }});"
        if kind == 6:
            return ""
        if kind == 7:
            return f"from app.{w} import {v.title()}{w.title()}, {v}_{w}"
        if kind == 8:
            return f"{indent}# TODO({w}): the {v} path is not covered — see issue #{rng.randrange(100, 9999)}"
        if kind == 9:
            return f"{indent}\tself.{w} = {v}  # tab-indented legacy code"
        if kind == 10:
            return f'{indent}raise {w.title()}Error(f"cannot {v} {{{w}!r}}: {{exc}}") from exc'
        if kind == 11:
            return f'{indent}assert result["{w}"] == expected_{v}, f"got {{result}}"'
        if kind == 12:
            return f"{indent}for {w} in sorted({v}s, key=lambda x: (x.{w}, x.id)):"
        return f"{indent}{w}_{v} = {rng.randrange(1000)} * SCALE  # café-safe"

    def _span(self, rng: random.Random, nbytes: int, offsets: list[int], text: str) -> str:
        total = offsets[-1]
        nbytes = max(1, min(nbytes, total - 1))
        start_char = rng.randrange(0, total - nbytes)
        a = bisect.bisect_left(offsets, start_char)
        b = bisect.bisect_left(offsets, offsets[a] + nbytes)
        b = min(max(b, a + 1), len(offsets) - 1)
        return text[offsets[a] : offsets[b]]

    def code_text(self, rng: random.Random, nbytes: int) -> str:
        return self._span(rng, nbytes, self.offsets, self.code)

    def numbered_text(self, rng: random.Random, nbytes: int) -> str:
        return self._span(rng, nbytes, self.noffsets, self.numbered)

    def base64(self, rng: random.Random, nbytes: int) -> str:
        nbytes = min(nbytes, len(self.b64) - 4) // 4 * 4
        start = rng.randrange(0, (len(self.b64) - nbytes) // 4) * 4
        return self.b64[start : start + nbytes]


class Boilerplate:
    """What the newest CLIs repeat in every session: the system prompt and tool schemas (Claude Code's
    `api-request-shape`), skill and agent listings, Codex's base instructions and world state. Built once;
    the same text in every file, as it is for one CLI version."""

    def __init__(self, rng: random.Random) -> None:
        def prose(nbytes: int) -> str:
            return " ".join(rng.choices(WORDS, k=max(1, nbytes // 6)))

        def tool(name: str) -> dict[str, Any]:
            params = {
                f"{rng.choice(WORDS)}_{i}": {"description": prose(rng.randrange(80, 500)), "type": "string"}
                for i in range(rng.randrange(2, 7))
            }
            schema = {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": params,
                "required": list(params)[:1],
                "additionalProperties": False,
            }
            return {"name": name, "description": prose(rng.randrange(600, 3600)), "input_schema": schema}

        self.system = [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {"type": "text", "text": prose(7_200)},
        ]
        self.tools = [tool(name) for name in CLAUDE_TOOLS]
        self.shape_hash = rng.randbytes(32).hex()
        self.sub_shape_hash = rng.randbytes(32).hex()
        self.skills = [(name, prose(rng.randrange(300, 900))) for name in SKILLS]
        self.agents = [
            (name, prose(rng.randrange(200, 700))) for name in ("claude", "Explore", "general-purpose", "Plan")
        ]
        self.snapshot = [prose(rng.randrange(300, 2000)) for _ in range(10)]
        self.environment = prose(800)
        self.codex_base = prose(21_000)
        self.codex_developer = [
            "<skills_instructions>\n" + prose(4_700),
            "<permissions instructions>\n" + prose(520),
            "<tools>\n" + prose(110),
        ]
        self.codex_skills = prose(4_650)

    def shape(self, subagent: bool) -> dict[str, Any]:
        """The request shape: the system prompt and every tool's schema (~40 KB; a subagent's has fewer tools)."""
        return {"system": self.system, "tools": self.tools[::2] if subagent else self.tools}


# ------------------------------------------------------------------------------------------- output files

Tokens = dict[str, int]


def _zero() -> Tokens:
    return {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}


@dataclass
class Totals:
    files: int = 0
    bytes: int = 0
    sessions: int = 0
    tokens: Tokens = field(default_factory=_zero)
    ws_sessions: int = 0
    ws_files: int = 0
    ws_bytes: int = 0
    ws_tokens: Tokens = field(default_factory=_zero)

    def add_tokens(self, tokens: Tokens, in_ws: bool) -> None:
        for k, v in tokens.items():
            self.tokens[k] += v
            if in_ws:
                self.ws_tokens[k] += v


@dataclass
class Stats:
    """Shape of what was written: lines, bytes in lines by size class, the largest line (kept in the manifest)."""

    lines: int = 0
    broken: Counter[str] = field(default_factory=Counter)  # lines written broken on purpose
    big_lines: Counter[str] = field(default_factory=Counter)
    big_bytes: Counter[str] = field(default_factory=Counter)
    largest_line: int = 0

    def line(self, n: int) -> None:
        self.lines += 1
        self.largest_line = max(self.largest_line, n)
        for name, floor in (("ge_1mb", 1 << 20), ("ge_64kb", 64 << 10), ("ge_10kb", 10 << 10)):
            if n >= floor:
                self.big_lines[name] += 1
                self.big_bytes[name] += n
                break


class Out:
    """One JSONL file, written through a 1 MB buffer; its mtime is set to its last timestamp on close."""

    def __init__(self, path: Path, stats: Stats) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.stats = stats
        self.fh: BinaryIO = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 - closed in close()
        self.bytes = 0
        self.last_t = 0.0

    def write(self, obj: dict[str, Any], t: float | None = None) -> int:
        data = orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
        return self.raw(data, t)

    def raw(self, data: bytes, t: float | None = None) -> int:
        self.fh.write(data)
        self.bytes += len(data)
        self.stats.line(len(data))
        if t is not None:
            self.last_t = max(self.last_t, t)
        return len(data)

    def close(self) -> int:
        self.fh.close()
        if self.last_t:
            os.utime(self.path, (self.last_t, self.last_t))
        return self.bytes


@dataclass
class Project:
    cwd: str
    files: list[str]
    in_ws: bool


def _projects(rng: random.Random) -> tuple[list[Project], list[Project]]:
    def files_for() -> list[str]:
        out = []
        for _ in range(rng.randrange(30, 90)):
            out.append(f"{rng.choice(CODE_DIRS)}/{rng.choice(WORDS)}_{rng.choice(WORDS)}{rng.choice(CODE_EXT)}")
        return sorted(set(out))

    ws = [Project(WORKSPACE + sub, files_for(), True) for sub in dict.fromkeys(WORKSPACE_SUBDIRS)]
    others = [Project(f"{SRC_ROOT}/{name}", files_for(), False) for name in OTHER_PROJECTS]
    return ws, others


class Clock:
    """Session time: starts somewhere in the span, advances per line, never passes `now`."""

    def __init__(self, rng: random.Random, now: float) -> None:
        self.rng = rng
        self.now = now - 1.0
        self.t = now - rng.uniform(0.4, SPAN_DAYS - 0.05) * 86400

    def tick(self, lo: float = 0.05, hi: float = 4.0) -> float:
        self.t = min(self.now, self.t + self.rng.uniform(lo, hi))
        return self.t


# ------------------------------------------------------------------------------------------- claude code


class ClaudeSession:
    """Writes one Claude Code session (and its subagent transcripts) up to a byte budget."""

    def __init__(
        self,
        g: Generator,
        project: Project,
        budget: int,
        session_id: str | None = None,
        out: Out | None = None,
        agent_id: str | None = None,
        clock: Clock | None = None,
        parent: ClaudeSession | None = None,
    ) -> None:
        rng = g.rng
        self.g = g
        self.rng = rng
        self.project = project
        self.cwd = project.cwd
        self.budget = budget
        self.session_id = session_id or _uuid(rng)
        self.agent_id = agent_id
        self.sidechain = agent_id is not None
        # A subagent is written by the CLI that runs its parent.
        self.modern: bool = parent.modern if parent else rng.random() < MODERN_SHARE
        self.version: str = (
            parent.version if parent else rng.choice(CLAUDE_MODERN_VERSIONS if self.modern else CLAUDE_VERSIONS)
        )
        models = CLAUDE_MODERN_MODELS if self.modern else CLAUDE_MODELS
        self.model = SUBAGENT_MODEL if self.sidechain else rng.choice(models)
        self.prompt_id: str | None = parent.prompt_id if parent else None  # the prompt a modern line answers
        self.prompt_text = ""
        self.last_request: str | None = None  # the previous `api-request` line's id
        self.notifications: list[tuple[str, str]] = []  # background agents done: (agent id, tool_use id)
        self.branch = rng.choice(BRANCHES)
        self.hooks = self.version >= "2.1" and rng.random() < 0.4
        self.clock = clock or Clock(rng, g.now)
        self.parent: str | None = None
        self.context = rng.randrange(9_000, 20_000)
        self.tokens = _zero()
        self.counts: Counter[str] = Counter()  # turns (real prompts), tool_calls, failures: the truth
        self.tracked: dict[str, dict[str, Any]] = {}
        self.files_written = 0
        self.bytes_written = 0
        proj_dir = g.claude_dir / "projects" / encode_cwd(project.cwd)
        if out is None:
            self.out = Out(proj_dir / f"{self.session_id}.jsonl", g.stats)
        else:
            self.out = out
        self.proj_dir = proj_dir

    # -- line builders

    def _line(
        self,
        kind: str,
        t: float,
        body: dict[str, Any],
        message_first: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A transcript line in Claude Code's key order (assistant lines put message + requestId before type)."""
        if self.modern:
            return self._modern_line(kind, t, body, message_first, extra or {})
        u = _uuid(self.rng)
        line: dict[str, Any] = {
            "parentUuid": self.parent,
            "isSidechain": self.sidechain,
            "userType": "external",
            "cwd": self.cwd,
            "sessionId": self.session_id,
            "version": self.version,
            "gitBranch": self.branch,
        }
        if self.agent_id:
            line["agentId"] = self.agent_id
        if message_first:
            line.update(body)
            line["type"] = kind
        else:
            line["type"] = kind
            line.update(body)
        line["uuid"] = u
        line["timestamp"] = iso(t)
        if extra:
            line.update(extra)
        self.parent = u
        return line

    def _modern_line(
        self, kind: str, t: float, body: dict[str, Any], message_first: bool, extra: dict[str, Any]
    ) -> dict[str, Any]:
        """Claude Code 2.1.3xx's key order: the session fields (cwd among them) come last."""
        u = _uuid(self.rng)
        line: dict[str, Any] = {"parentUuid": self.parent, "isSidechain": self.sidechain}
        if kind == "user" and self.prompt_id:
            line["promptId"] = self.prompt_id
        if self.agent_id:
            line["agentId"] = self.agent_id
        if message_first:
            line.update(body)
            line["type"] = kind
        else:
            line["type"] = kind
            line.update(body)
        line["uuid"] = u
        line["timestamp"] = iso(t)
        line.update(extra)
        line.update(
            userType="external",
            entrypoint="cli",
            cwd=self.cwd,
            sessionId=self.session_id,
            version=self.version,
            gitBranch=self.branch,
        )
        self.parent = u
        return line

    def _ids(self) -> dict[str, str]:
        """The session (and subagent) ids of the bookkeeping lines that carry no uuid."""
        ids = {"sessionId": self.session_id}
        if self.agent_id:
            ids["agentId"] = self.agent_id
        return ids

    def _path(self) -> str:
        rng = self.rng
        if rng.random() < 0.03:
            return rng.choice(("/etc/hosts", "/home/dev/.bashrc", "/tmp/out.log", f"{SRC_ROOT}/dotfiles/.zshrc"))
        root = WORKSPACE if self.project.in_ws else self.project.cwd
        return f"{root}/{rng.choice(self.project.files)}"

    def write(self, obj: dict[str, Any], t: float | None) -> None:
        self.out.write(obj, t)

    def user(self, content: str | list[Any], **extra: Any) -> dict[str, Any]:
        t = self.clock.tick(2, 90) if isinstance(content, str) else self.clock.tick(0.05, 3)
        line = self._line("user", t, {"message": {"role": "user", "content": content}}, extra=extra)
        self.write(line, t)
        return line

    def assistant_response(self, blocks: list[dict[str, Any]], stop: str) -> None:
        """One API response: one line per content block, same message.id + requestId + usage."""
        rng = self.rng
        mid = "msg_01" + _tok(rng, 22)
        rid = "req_011C" + _tok(rng, 18)
        write5m = rng.choice((0, 0, rng.randrange(50, 4000), rng.randrange(2000, 30000)))
        inp, read = rng.randrange(1, 40), self.context
        out = rng.randrange(1, 60) if stop == "tool_use" else rng.randrange(40, 2500)
        usage: dict[str, Any] = {
            "input_tokens": inp,
            "cache_creation_input_tokens": write5m,
            "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": write5m, "ephemeral_1h_input_tokens": 0},
            "output_tokens": out,
            "service_tier": "standard",
        }
        if self.modern:
            usage = {
                "input_tokens": inp,
                "cache_creation_input_tokens": write5m,
                "cache_read_input_tokens": read,
                "output_tokens": out,
                "output_tokens_details": {"thinking_tokens": 0},
                "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
                "service_tier": "standard",
                "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": write5m},
                "inference_geo": "",
                "iterations": [],
                "speed": "standard",
                "fallback_credit": None,
            }
        self.context = min(180_000, self.context + write5m + rng.randrange(100, 3000))
        self.tokens["input"] += inp
        self.tokens["output"] += out
        self.tokens["cache_read"] += read
        self.tokens["cache_write"] += write5m
        t0 = self.clock.tick(1, 25)
        if self.modern:
            self.modern_response(t0, mid, rid, blocks, stop, usage)
            return
        for i, block in enumerate(blocks):
            t = t0 + i * 0.4
            message = {
                "model": self.model,
                "id": mid,
                "type": "message",
                "role": "assistant",
                "content": [block],
                "stop_reason": stop if i == len(blocks) - 1 else None,
                "stop_sequence": None,
                "usage": usage,
            }
            self.write(self._line("assistant", t, {"message": message, "requestId": rid}, message_first=True), t)

    def modern_response(
        self, t0: float, mid: str, rid: str, blocks: list[dict[str, Any]], stop: str, usage: dict[str, Any]
    ) -> None:
        """Claude Code 2.1.3xx: an `api-request` line (the request's parameters, its new messages by hash)
        and a `tools-used` line before the response's lines, which carry the request's reference."""
        rng = self.rng
        ref = _uuid(rng)
        request: dict[str, Any] = {"type": "api-request", **self._ids(), "id": ref, "timestamp": iso(t0)}
        request.update(
            version=self.version,
            querySource=f"agent:{self.agent_id}" if self.agent_id else "repl_main_thread",
            shapeHash=self.g.boilerplate.sub_shape_hash if self.sidechain else self.g.boilerplate.shape_hash,
            params={
                "model": self.model,
                "betas": ["claude-code-20250219", "interleaved-thinking-2025-05-14", "context-management-2025-06-27"],
                "max_tokens": 128000,
                "thinking": {"type": "adaptive", "display": "updates"},
                "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
                "output_config": {"effort": "medium"},
            },
        )
        if self.last_request:
            request["base"] = self.last_request
        request["keep"] = rng.randrange(0, 400)
        request["tail"] = [rng.randbytes(32).hex() for _ in range(2)]
        request["cacheControl"] = [
            {"path": ["system", 0], "value": {"type": "ephemeral"}},
            {"path": ["system", 1], "value": {"type": "ephemeral"}},
            {"path": ["messages", request["keep"] + 1, "content", 0], "value": {"type": "ephemeral"}},
        ]
        request["requestDigest"] = rng.randbytes(32).hex()
        self.write(request, t0)
        self.last_request = ref
        names = [b["name"] for b in blocks if b.get("type") == "tool_use"]
        if names:
            self.write({"type": "tools-used", "tools": sorted(set(names)), "sessionId": self.session_id}, t0)
        for i, block in enumerate(blocks):
            t = t0 + i * 0.4
            message = {
                "id": mid,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [block],
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": usage,
                "stop_details": None,
            }
            body = {
                "message": message,
                "apiBlockIndex": i,
                "requestId": rid,
                "requestRef": ref,
                "requestedModel": self.model,
                "promptCacheRequested": "5m",
            }
            extra = {"effort": "medium", "perTurnEffort": "medium", "madeBy": "model"}
            self.write(self._line("assistant", t, body, message_first=True, extra=extra), t)

    def attachment(self, kind: str, fields: dict[str, Any], rendered: str | None, role: str = "system") -> None:
        """A modern `attachment` line: context Claude Code adds to the conversation, with its rendered text."""
        t = self.clock.tick(0.001, 0.01)
        extra: dict[str, Any] = {}
        if rendered is not None:
            extra = {"rendered": [{"content": f"<system-reminder>\n{rendered}\n</system-reminder>"}]}
            extra["renderedRole"] = role
        body = {"attachment": {"type": kind, **fields}}
        self.write(self._line("attachment", t, body, message_first=True, extra=extra), t)

    def blob(self, role: str, texts: list[str]) -> None:
        """An `api-request-blob`: a message of the request that the transcript does not hold verbatim."""
        body = {"role": role, "content": [{"type": "text", "text": x} for x in texts]}
        line = {"type": "api-request-blob", **self._ids(), "hash": self.rng.randbytes(32).hex(), "message": body}
        self.write(line, None)

    def modern_header(self) -> None:
        """What Claude Code 2.1.3xx writes after a session's first prompt: the environment, the model, the
        deferred tools, agents and skills on offer, the git status, the system prompt, and the request shape."""
        rng, b = self.rng, self.g.boilerplate
        cwd = self.cwd
        env = {"workingDirectory": cwd, "isWorktree": False, "isGitRepo": True, "additionalWorkingDirectories": []}
        env |= {"platform": "linux", "shell": "bash", "osVersion": "Linux 6.8.0-49-generic"}
        self.attachment(
            "environment", {"snapshot": env}, f"# Environment\n - Primary working directory: {cwd}\n{b.environment}"
        )
        identity = {"modelId": self.model, "marketingName": "Opus 5.5", "knowledgeCutoff": "June 2026"}
        text = f"You are powered by the model named Opus 5.5. The exact model ID is {self.model}."
        self.attachment("model", {"identity": identity, "text": text}, text)
        deferred = list(DEFERRED_TOOLS)
        fields: dict[str, Any] = {"addedNames": deferred, "addedLines": deferred, "removedNames": []}
        self.attachment("deferred_tools_delta", fields, "Deferred tools, load with ToolSearch:\n" + "\n".join(deferred))
        if not self.sidechain:
            lines = [f"- {name}: {text}" for name, text in b.agents]
            fields = {"addedTypes": [n for n, _ in b.agents], "addedLines": lines, "isInitial": True}
            self.attachment("agent_listing_delta", fields, "Available agent types:\n" + "\n".join(lines))
        listing = "\n".join(f"- {name}: {text}" for name, text in b.skills)
        fields = {"content": listing, "skillCount": len(b.skills), "isInitial": True, "names": [n for n, _ in b.skills]}
        self.attachment("skill_listing", fields, "The following skills are available:\n\n" + listing)
        if not self.sidechain:
            self.write({"type": "atis-latch", "atis": "", "sessionId": self.session_id}, None)
        status = self.g.pools.code_text(rng, rng.randrange(200, 3000))
        self.attachment("session_context", {"context": {"gitStatus": status}}, f"# gitStatus\n{status}", "user")
        day = iso(self.clock.t)[:10]
        self.attachment("date", {"date": day}, f"Today's date is {day}.")
        self.attachment("prompt_snapshot", {"systemPrompt": b.snapshot, "contextRendering": "announced"}, None)
        shape: dict[str, Any] = {"type": "api-request-shape", **self._ids()}
        shape["shapeHash"] = b.sub_shape_hash if self.sidechain else b.shape_hash
        shape |= {"timestamp": iso(self.clock.t), "version": self.version, "shape": b.shape(self.sidechain)}
        self.write(shape, self.clock.t)
        self.blob("system", ["# Environment\n" + b.environment])

    def snapshot(self, update: bool) -> None:
        mid = _uuid(self.rng)
        t = self.clock.t
        backups = dict(self.tracked)
        line = {
            "type": "file-history-snapshot",
            "messageId": mid,
            "snapshot": {"messageId": mid, "trackedFileBackups": backups, "timestamp": iso(t)},
            "isSnapshotUpdate": update,
        }
        self.write(line, t)

    def _track(self, path: str) -> None:
        n = len(self.tracked) + 1
        self.tracked[path] = {
            "backupFileName": f"{_tok(self.rng, 16).lower()}@v{n}",
            "version": n,
            "backupTime": iso(self.clock.t),
        }

    # -- tools

    def tool_round(self) -> None:
        rng = self.rng
        blocks: list[dict[str, Any]] = []
        if rng.random() < 0.4:
            blocks.append(
                {
                    "type": "thinking",
                    "thinking": " ".join(rng.choices(WORDS, k=rng.randrange(20, 300))),
                    "signature": self.g.pools.base64(rng, rng.randrange(200, 1200)),
                }
            )
        if rng.random() < 0.6:
            blocks.append({"type": "text", "text": " ".join(rng.choices(WORDS, k=rng.randrange(5, 60)))})
        calls = [self.tool_call() for _ in range(1 if rng.random() < 0.8 else rng.randrange(2, 4))]
        blocks.extend(block for block, _ in calls)
        self.assistant_response(blocks, "tool_use")
        assistant_uuid = self.parent
        for block, result in calls:
            if self.hooks:
                self.progress(block, "PreToolUse")
            result(block, assistant_uuid)
            if self.hooks:
                self.progress(block, "PostToolUse")

    def progress(self, block: dict[str, Any], event: str) -> None:
        t = self.clock.tick(0.01, 0.2)
        data = {"type": "hook_progress", "hookEvent": event, "hookName": f"{event}:{block['name']}"}
        data["command"] = "$CLAUDE_PROJECT_DIR/.claude/hooks/guard.sh"
        body = {"data": data, "parentToolUseID": block["id"], "toolUseID": block["id"]}
        self.write(self._line("progress", t, body), t)

    def tool_call(self) -> tuple[dict[str, Any], Any]:
        rng = self.rng
        tid = "toolu_01" + _tok(rng, 22)
        self.counts["tool_calls"] += 1
        r = rng.random()
        if r < 0.30:
            return self._read(tid)
        if r < 0.53:
            return self._bash(tid)
        if r < 0.68:
            return self._edit(tid)
        if r < 0.73:
            return self._write(tid)
        if r < 0.83:
            return self._grep(tid)
        if r < 0.88:
            return self._glob(tid)
        if r < 0.96 or self.sidechain:
            return self._todo(tid)
        return self._task(tid)

    def _result(
        self,
        block: dict[str, Any],
        assistant_uuid: str | None,
        content: str | list[Any],
        tool_use_result: Any,
        error: bool = False,
    ) -> None:
        res: dict[str, Any] = {"tool_use_id": block["id"], "type": "tool_result", "content": content}
        if error:
            res["is_error"] = True
            self.counts["failures"] += 1
        extra: dict[str, Any] = {"toolUseResult": tool_use_result}
        if self.version >= "2.1":
            extra["sourceToolAssistantUUID"] = assistant_uuid
        if self.modern:
            extra["permissionDecision"] = {"decision": "accept", "source": "config", "reasonType": "mode"}
        self.user([res], **extra)

    def _error(self, block: dict[str, Any], assistant_uuid: str | None, text: str) -> None:
        self._result(block, assistant_uuid, f"<tool_use_error>{text}</tool_use_error>", f"Error: {text}", True)

    def _read(self, tid: str) -> tuple[dict[str, Any], Any]:
        rng = self.rng
        path = self._path()
        image = path.endswith(".png") or rng.random() < 0.003
        if image:
            path = path.rsplit(".", 1)[0] + ".png"
        block = {"type": "tool_use", "id": tid, "name": "Read", "input": {"file_path": path}}

        def result(block: dict[str, Any], au: str | None) -> None:
            if rng.random() < 0.05:
                self._error(block, au, "File does not exist.")
                return
            if image:
                data = self.g.pools.base64(rng, rng.randrange(1 << 20, 5 << 20))
                src = {"type": "base64", "media_type": "image/png", "data": data}
                tur = {
                    "type": "image",
                    "file": {"base64": data, "type": "image/png", "originalSize": len(data) * 3 // 4},
                }
                self._result(block, au, [{"type": "image", "source": src}], tur)
                return
            size = _lognormal(rng, 6_000, 1.4, 400, 2 << 20)
            numbered = self.g.pools.numbered_text(rng, size)
            plain = self.g.pools.code_text(rng, size)
            n = plain.count("\n")
            tur = {
                "type": "text",
                "file": {"filePath": path, "content": plain, "numLines": n, "startLine": 1, "totalLines": n},
            }
            self._result(block, au, numbered, tur)

        return block, result

    def _bash(self, tid: str) -> tuple[dict[str, Any], Any]:
        rng = self.rng
        cmd = rng.choice(SHELL_CMDS).format(f=rng.choice(self.project.files), w=rng.choice(WORDS), d="src")
        inp = {"command": cmd, "description": f"Run {cmd.split()[0]}"}
        block = {"type": "tool_use", "id": tid, "name": "Bash", "input": inp}

        def result(block: dict[str, Any], au: str | None) -> None:
            out = self.g.pools.code_text(rng, _lognormal(rng, 1500, 1.6, 20, 600_000))
            if rng.random() < 0.12:
                text = f"Exit code 1\n{out[-4000:]}"
                self._result(block, au, text, f"Error: {text[:2000]}", True)
                return
            interrupted = rng.random() < 0.01
            tur = {"stdout": out, "stderr": "", "interrupted": interrupted, "isImage": False}
            self._result(block, au, out, tur)

        return block, result

    def _edit(self, tid: str) -> tuple[dict[str, Any], Any]:
        rng = self.rng
        path = self._path()
        old = self.g.pools.code_text(rng, rng.randrange(40, 1500))
        new = self.g.pools.code_text(rng, rng.randrange(40, 2000))
        inp = {"file_path": path, "old_string": old, "new_string": new}
        block = {"type": "tool_use", "id": tid, "name": "Edit", "input": inp}

        def result(block: dict[str, Any], au: str | None) -> None:
            if rng.random() < 0.07:
                self._error(block, au, "String to replace not found in file.")
                return
            original = self.g.pools.code_text(rng, _lognormal(rng, 9_000, 1.2, 1_000, 1 << 20))
            snippet = self.g.pools.numbered_text(rng, rng.randrange(300, 2500))
            text = f"The file {path} has been updated. Here's the result of running `cat -n` on a snippet:\n{snippet}"
            hunk = {
                "oldStart": rng.randrange(1, 400),
                "oldLines": old.count("\n") + 1,
                "newStart": 1,
                "newLines": new.count("\n") + 1,
                "lines": ["-" + x for x in old.splitlines()] + ["+" + x for x in new.splitlines()],
            }
            tur = {
                "filePath": path,
                "oldString": old,
                "newString": new,
                "originalFile": original,
                "structuredPatch": [hunk],
                "userModified": False,
                "replaceAll": False,
            }
            self._track(path)
            self._result(block, au, text, tur)
            self.snapshot(update=True)

        return block, result

    def _write(self, tid: str) -> tuple[dict[str, Any], Any]:
        rng = self.rng
        path = self._path()
        content = self.g.pools.code_text(rng, _lognormal(rng, 6_000, 1.2, 200, 400_000))
        block = {"type": "tool_use", "id": tid, "name": "Write", "input": {"file_path": path, "content": content}}

        def result(block: dict[str, Any], au: str | None) -> None:
            tur = {"type": "create", "filePath": path, "content": content, "structuredPatch": []}
            self._track(path)
            self._result(block, au, f"File created successfully at: {path}", tur)
            self.snapshot(update=True)

        return block, result

    def _grep(self, tid: str) -> tuple[dict[str, Any], Any]:
        rng = self.rng
        pattern = rng.choice(WORDS)
        mode = rng.choice(("files_with_matches", "content"))
        inp = {"pattern": pattern, "path": self.cwd, "output_mode": mode}
        block = {"type": "tool_use", "id": tid, "name": "Grep", "input": inp}

        def result(block: dict[str, Any], au: str | None) -> None:
            files = rng.sample(self.project.files, min(len(self.project.files), rng.randrange(0, 25)))
            if mode == "content":
                body = self.g.pools.code_text(rng, _lognormal(rng, 2000, 1.2, 50, 200_000))
                tur: dict[str, Any] = {"mode": mode, "numFiles": len(files), "filenames": [], "content": body}
                tur["numLines"] = body.count("\n")
                self._result(block, au, body, tur)
            else:
                body = f"Found {len(files)} files\n" + "\n".join(f"{self.cwd}/{f}" for f in files)
                tur = {"mode": mode, "numFiles": len(files), "filenames": files}
                self._result(block, au, body, tur)

        return block, result

    def _glob(self, tid: str) -> tuple[dict[str, Any], Any]:
        rng = self.rng
        block = {"type": "tool_use", "id": tid, "name": "Glob", "input": {"pattern": f"**/*{rng.choice(CODE_EXT)}"}}

        def result(block: dict[str, Any], au: str | None) -> None:
            files = [f"{self.cwd}/{f}" for f in rng.sample(self.project.files, min(12, len(self.project.files)))]
            tur = {"filenames": files, "durationMs": rng.randrange(3, 400), "numFiles": len(files), "truncated": False}
            self._result(block, au, "\n".join(files), tur)

        return block, result

    def _todo(self, tid: str) -> tuple[dict[str, Any], Any]:
        rng = self.rng
        todos = [
            {
                "content": f"{rng.choice(WORDS).title()} the {rng.choice(WORDS)} {rng.choice(WORDS)}",
                "status": rng.choice(("pending", "in_progress", "completed")),
                "activeForm": f"Working on the {rng.choice(WORDS)}",
            }
            for _ in range(rng.randrange(2, 8))
        ]
        block = {"type": "tool_use", "id": tid, "name": "TodoWrite", "input": {"todos": todos}}

        def result(block: dict[str, Any], au: str | None) -> None:
            text = "Todos have been modified successfully. Ensure that you continue to use the todo list."
            self._result(block, au, text, {"oldTodos": todos[:-1], "newTodos": todos})

        return block, result

    def _task(self, tid: str) -> tuple[dict[str, Any], Any]:
        rng = self.rng
        prompt = f"Search the codebase for every use of {rng.choice(WORDS)} and report the call sites."
        inp = {"description": "Find call sites", "prompt": prompt, "subagent_type": "general-purpose"}
        # Claude Code 2.1.3xx calls it Agent, and may run it in the background: the result only says it
        # started, and a `<task-notification>` arrives as a new user line when it is done.
        background = self.modern and rng.random() < 0.5
        block = {"type": "tool_use", "id": tid, "name": "Agent" if self.modern else "Task", "input": inp}

        def result(block: dict[str, Any], au: str | None) -> None:
            agent_id = _tok(rng, 8).lower()
            budget = min(4 << 20, max(20_000, int(self.budget * rng.uniform(0.03, 0.12))))
            path = self.proj_dir / self.session_id / "subagents" / f"agent-{agent_id}.jsonl"
            sub_out = Out(path, self.g.stats)
            clock = Clock(rng, self.g.now)
            clock.t = self.clock.t
            sub = ClaudeSession(self.g, self.project, budget, self.session_id, sub_out, agent_id, clock, self)
            sub.run_subagent(prompt)
            self.clock.t = max(self.clock.t, clock.t)
            self.files_written += 1
            self.bytes_written += sub_out.close()
            for k, v in sub.tokens.items():
                self.tokens[k] += v
            self.counts["tool_calls"] += sub.counts["tool_calls"]
            self.counts["failures"] += sub.counts["failures"]
            if background:
                launched = "Async agent launched successfully. " + " ".join(rng.choices(WORDS, k=150))
                tur_bg = {
                    "isAsync": True,
                    "status": "async_launched",
                    "agentId": agent_id,
                    "description": inp["description"],
                    "resolvedModel": self.model,
                    "prompt": prompt,
                    "outputFile": f"/tmp/claude-1000/{self.session_id}/tasks/{agent_id}.output",
                    "canReadOutputFile": True,
                    "canContinueAgent": True,
                }
                self._result(block, au, [{"type": "text", "text": launched}], tur_bg)
                self.notifications.append((agent_id, block["id"]))
                return
            text = " ".join(rng.choices(WORDS, k=rng.randrange(30, 200)))
            tur = {
                "status": "completed",
                "prompt": prompt,
                "agentId": agent_id,
                "content": [{"type": "text", "text": text}],
                "totalDurationMs": rng.randrange(5_000, 300_000),
                "totalTokens": sum(sub.tokens.values()),
                "totalToolUseCount": rng.randrange(1, 40),
            }
            self._result(block, au, [{"type": "text", "text": text}], tur)

        return block, result

    # -- whole sessions

    def used(self) -> int:
        return self.out.bytes

    def prompt(self, text: str | None = None) -> None:
        """A person's prompt: a random one, now and then with an injected line before it, a pasted screenshot
        or a todo attachment after it; or `text`, written as it is with nothing random around it."""
        rng = self.rng
        g = self.g
        first = self.prompt_id is None
        scripted = text is not None
        if self.modern:
            self.prompt_id = _uuid(rng)
        if text is None:
            text = rng.choice(PROMPTS).format(f=rng.choice(self.project.files), w=rng.choice(WORDS))
        if self.modern or (self.version >= "2.1" and (scripted or rng.random() < 0.3)):
            t = self.clock.tick(1, 30)
            for op in ("enqueue", "dequeue"):
                q = {"type": "queue-operation", "operation": op, "timestamp": iso(t), "sessionId": self.session_id}
                if op == "enqueue":
                    q["content"] = text
                self.write(q, t)
        self.snapshot(update=False)
        if not scripted and rng.random() < 0.06:
            self.user(rng.choice(INJECTED), isMeta=True)
        extra: dict[str, Any] = {}
        if self.modern:
            extra = {"permissionMode": rng.choice(("default", "acceptEdits")), "promptSource": "user"}
            extra |= {"turnOrigin": "user", "turnPosition": {"promptIndex": self.counts["turns"], "turnIndex": 1}}
        if not scripted and rng.random() < 0.01:  # a pasted screenshot
            data = g.pools.base64(rng, rng.randrange(1 << 20, 5 << 20))
            image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
            self.user([{"type": "text", "text": text}, image], **extra)
        else:
            self.user(text, **extra)
        self.counts["turns"] += 1
        self.prompt_text = text
        if self.modern:
            if first:
                self.modern_header()
            elif not scripted and rng.random() < 0.2:
                day = iso(self.clock.t)[:10]
                self.attachment("date", {"date": day}, f"Today's date is {day}.")
            self.blob("user", ["<system-reminder>\n" + " ".join(rng.choices(WORDS, k=80)), text])
        if not scripted and rng.random() < 0.15:
            t = self.clock.tick(0.01, 0.2)
            attachment = {
                "type": "todo",
                "content": [{"content": "Run the tests", "status": "pending", "activeForm": "Running the tests"}],
                "itemCount": 1,
                "context": "main",
            }
            self.write(self._line("attachment", t, {"attachment": attachment}), t)

    def finish_turn(self) -> None:
        rng = self.rng
        if rng.random() < 0.04:
            self.user([{"type": "text", "text": "[Request interrupted by user for tool use]"}])
            return
        text = " ".join(rng.choices(WORDS, k=rng.randrange(20, 250)))
        self.assistant_response([{"type": "text", "text": text}], "end_turn")
        if self.modern and not self.sidechain:
            last = {"type": "last-prompt", "lastPrompt": self.prompt_text, "leafUuid": self.parent}
            self.write({**last, "sessionId": self.session_id}, None)
        if rng.random() < 0.1:
            t = self.clock.tick(0.01, 0.5)
            body = {
                "subtype": "local_command" if rng.random() < 0.5 else "informational",
                "content": "<local-command-stdout>Compacted</local-command-stdout>",
                "level": "info",
                "isMeta": False,
            }
            self.write(self._line("system", t, body), t)

    def run(self) -> tuple[int, int]:
        """Writes the whole session; returns (files, bytes) including subagents."""
        rng = self.rng
        if rng.random() < 0.12:
            for _ in range(rng.randrange(1, 4)):
                summary = " ".join(rng.choices(WORDS, k=6)).capitalize()
                self.write({"type": "summary", "summary": summary, "leafUuid": _uuid(rng)}, None)
        moved = False
        while self.used() + self.bytes_written < self.budget:
            self.prompt()
            for _ in range(rng.randrange(1, 14)):
                self.tool_round()
                if self.used() + self.bytes_written >= self.budget:
                    break
            self.finish_turn()
            self.notify()
            if rng.random() < 0.01:  # a line cut short by a crash, then the session went on
                self.out.raw(b'{"parentUuid":null,"isSidechain":false,"type":"assistant","message":{"id":"msg_01\n')
                self.g.stats.broken["malformed_line"] += 1
            if self.project.in_ws and not moved and rng.random() < 0.05:  # `cd services/auth` mid-session
                self.cwd = WORKSPACE + "/services/auth"
                moved = True
        if self.modern:
            self.cost_state()
        if rng.random() < 0.04:  # still being written: a last line without its newline
            self.out.raw(
                b'{"parentUuid":"' + (self.parent or "").encode() + b'","isSidechain":false,"type":"user","mess'
            )
            self.g.stats.broken["incomplete_line"] += 1
        self.files_written += 1
        self.bytes_written += self.out.close()
        return self.files_written, self.bytes_written

    def notify(self) -> None:
        """Background agents that finished: Claude Code queues a `<task-notification>` as a user line (written
        by Claude Code, not typed: not a prompt in the truth) and the model answers it."""
        for agent_id, tool_use_id in self.notifications:
            rng = self.rng
            summary = " ".join(rng.choices(WORDS, k=rng.randrange(20, 120)))
            text = (
                f"<task-notification>\n<task-id>{agent_id}</task-id>\n<tool-use-id>{tool_use_id}</tool-use-id>\n"
                f"<output-file>/tmp/claude-1000/{self.session_id}/tasks/{agent_id}.output</output-file>\n"
                f"<status>completed</status>\n<summary>{summary}</summary>\n</task-notification>"
            )
            t = self.clock.tick(1, 30)
            for op in ("enqueue", "dequeue"):
                q = {"type": "queue-operation", "operation": op, "timestamp": iso(t), "sessionId": self.session_id}
                if op == "enqueue":
                    q["content"] = text
                self.write(q, t)
            self.prompt_id = _uuid(rng)
            origin = {"kind": "task-notification", "producer": "session-task", "runId": _tok(rng, 18).lower()}
            extra: dict[str, Any] = {"permissionMode": "default", "origin": origin, "promptSource": "system"}
            extra |= {"turnOrigin": "task_notification", "queueSkipAttachments": True}
            self.user(text, **extra)
            self.counts["task_notifications"] += 1
            self.assistant_response([{"type": "text", "text": " ".join(rng.choices(WORDS, k=40))}], "end_turn")
        self.notifications.clear()

    def cost_state(self) -> None:
        """Claude Code 2.1.3xx's last line of a session: its cost and usage so far (not read by either tool)."""
        tk = self.tokens
        usage = {
            "inputTokens": tk["input"],
            "outputTokens": tk["output"],
            "cacheReadInputTokens": tk["cache_read"],
            "cacheCreationInputTokens": tk["cache_write"],
            "costUSD": round(tk["output"] * 15e-6 + tk["cache_read"] * 0.3e-6, 6),
        }
        line = {"type": "cost-state", "sessionId": self.session_id, "totalCostUSD": usage["costUSD"]}
        line |= {"totalAPIDuration": self.rng.randrange(10_000, 900_000), "modelUsage": {self.model: usage}}
        self.write(line | {"hasUnknownModelCost": False}, None)

    def run_subagent(self, prompt: str) -> None:
        rng = self.rng
        self.user(prompt)
        if self.modern:
            self.modern_header()
        while self.used() < self.budget:
            self.tool_round()
            if rng.random() < 0.15:
                self.finish_turn()
        self.finish_turn()


# ------------------------------------------------------------------------------------------- codex


class CodexSession:
    """Writes one Codex rollout up to a byte budget."""

    def __init__(self, g: Generator, project: Project, budget: int, archived: bool, old_format: bool) -> None:
        rng = g.rng
        self.g = g
        self.rng = rng
        self.project = project
        self.budget = budget
        self.old = old_format
        self.session_id = _uuid(rng)
        self.clock = Clock(rng, g.now)
        start = datetime.fromtimestamp(self.clock.t, UTC)
        name = f"rollout-{start.strftime('%Y-%m-%dT%H-%M-%S')}-{self.session_id}.jsonl"
        if archived:
            path = g.codex_dir / "archived_sessions" / name
        else:
            path = g.codex_dir / "sessions" / start.strftime("%Y/%m/%d") / name
        self.out = Out(path, g.stats)
        self.modern = not old_format and rng.random() < MODERN_SHARE
        self.version = rng.choice(CODEX_MODERN_VERSIONS if self.modern else CODEX_VERSIONS)
        self.model = rng.choice(CODEX_MODERN_MODELS if self.modern else CODEX_MODELS)
        self.total = {"input_tokens": 0, "cached_input_tokens": 0, "output_tokens": 0, "reasoning_output_tokens": 0}
        self.turn_total = dict(self.total)
        self.ordinal = 0
        self.turn_id = ""
        self.sequence = 0  # history_sequence of the modern response items
        self.context = rng.randrange(6_000, 14_000)
        self.counts: Counter[str] = Counter()

    def line(self, kind: str, payload: dict[str, Any], t: float) -> None:
        if self.old:
            self.out.write(payload, t)
        elif self.modern:
            self.out.write({"timestamp": iso(t), "ordinal": self.ordinal, "type": kind, "payload": payload}, t)
            self.ordinal += 1
        else:
            self.out.write({"timestamp": iso(t), "type": kind, "payload": payload}, t)

    def item(self, payload: dict[str, Any], t: float) -> None:
        """A response_item; the modern format adds the turn id and the item's place in the history."""
        if self.modern:
            payload["internal_chat_message_metadata_passthrough"] = {"turn_id": self.turn_id}
            self.sequence += 1
            meta = {"history_sequence": self.sequence, "sampled_through_sequence": self.sequence - 1}
            meta |= {"client_authored": False}
            line = {"timestamp": iso(t), "ordinal": self.ordinal, "type": "response_item", "payload": payload}
            self.out.write(line | {"metadata": meta}, t)
            self.ordinal += 1
            return
        self.line("response_item", payload, t)

    def completed(self, item: dict[str, Any]) -> None:
        """The modern `item_completed` event that follows (or precedes) an item: it echoes the item."""
        t = self.clock.tick(0.001, 0.2)
        ms = int(t * 1000)
        payload = {"type": "item_completed", "thread_id": self.session_id, "turn_id": self.turn_id, "item": item}
        self.line("event_msg", payload | {"started_at_ms": ms, "completed_at_ms": ms}, t)

    def call_id(self) -> str:
        return "call_" + _tok(self.rng, 24)

    def header(self) -> None:
        rng = self.rng
        t = self.clock.t
        instructions = self.g.pools.code_text(rng, rng.randrange(4_000, 24_000)) if rng.random() < 0.6 else None
        cwd = self.project.cwd
        if self.old:
            self.out.write({"id": self.session_id, "timestamp": iso(t), "instructions": instructions}, t)
        else:
            payload: dict[str, Any] = {
                "id": self.session_id,
                "timestamp": iso(t),
                "cwd": cwd,
                "originator": "codex_cli_rs",
                "cli_version": self.version,
                "instructions": instructions,
                "source": "cli",
                "model_provider": "openai",
                "git": {
                    "commit_hash": _tok(rng, 40).lower(),
                    "branch": rng.choice(BRANCHES) or "main",
                    "repository_url": f"git@github.com:acme/{cwd.rsplit('/', 1)[-1]}.git",
                },
            }
            self.line("session_meta", payload, t)
        env = (
            f"<environment_context>\n  <cwd>{cwd}</cwd>\n  <approval_policy>on-request</approval_policy>\n"
            "  <sandbox_mode>workspace-write</sandbox_mode>\n  <network_access>restricted</network_access>\n"
            "  <shell>bash</shell>\n</environment_context>"
        )
        self.message("user", env, "input_text")
        if rng.random() < 0.5:
            agents = self.g.pools.code_text(rng, rng.randrange(500, 6000))
            self.message("user", f"<user_instructions>\n\n{agents}\n\n</user_instructions>", "input_text")

    def message(self, role: str, text: str, kind: str) -> None:
        t = self.clock.tick(0.01, 1)
        self.line("response_item", {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}, t)

    def event(self, payload: dict[str, Any]) -> None:
        if not self.old:
            self.line("event_msg", payload, self.clock.tick(0.01, 0.3))

    def token_count(self, out_tokens: int) -> None:
        rng = self.rng
        inp = self.context
        cached = int(inp * rng.uniform(0.7, 0.97)) if self.total["input_tokens"] else 0
        reasoning = rng.randrange(0, max(1, out_tokens))
        last = {
            "input_tokens": inp,
            "cached_input_tokens": cached,
            "output_tokens": out_tokens,
            "reasoning_output_tokens": reasoning,
            "total_tokens": inp + out_tokens,
        }
        for k in self.total:
            self.total[k] += last[k]
        self.context = min(250_000, self.context + rng.randrange(300, 6000))
        for k in self.turn_total:
            self.turn_total[k] += last[k]
        if self.old:
            return
        total = dict(self.total)
        total["total_tokens"] = total["input_tokens"] + total["output_tokens"]
        limits: dict[str, Any] = {
            "primary": {"used_percent": round(rng.uniform(0, 90), 1), "window_minutes": 299, "resets_in_seconds": 9000},
            "secondary": {"used_percent": round(rng.uniform(0, 60), 1), "window_minutes": 10079},
        }
        info: dict[str, Any] = {"total_token_usage": total, "last_token_usage": last, "model_context_window": 272_000}
        if self.modern:
            # 0.16x: every response's usage also gets a line of its own (read by neither tool)
            for usage in (last, total):
                usage["cache_write_input_tokens"] = 0
            turn = dict(self.turn_total)
            turn["total_tokens"] = turn["input_tokens"] + turn["output_tokens"]
            record: dict[str, Any] = {
                "thread_id": self.session_id,
                "turn_id": self.turn_id,
                "session_id": self.session_id,
            }
            record |= {"root_turn_id": self.turn_id, "response_id": "resp_" + _tok(rng, 24).lower()}
            record |= {"usage": last, "turn_token_usage": turn, "thread_token_usage": total}
            self.line("token_usage_record", record, self.clock.tick(0.001, 0.05))
            info["last_usage_includes_reasoning"] = False
            limits = {"limit_id": "codex", "limit_name": None, **limits, "credits": None, "plan_type": "pro"}
        self.event({"type": "token_count", "info": info, "rate_limits": limits})

    def turn(self) -> None:
        rng = self.rng
        self.turn_open()
        for _ in range(rng.randrange(1, 16)):
            self.round()
            if self.out.bytes >= self.budget:
                break
        self.turn_close()

    def turn_open(self, text: str | None = None) -> None:
        """A turn's context and the person's prompt (`text`, or a random one)."""
        rng = self.rng
        cwd = self.project.cwd
        if not self.old:
            ctx = {
                "cwd": cwd,
                "approval_policy": "on-request",
                "sandbox_policy": {"mode": "workspace-write", "network_access": False},
                "model": self.model,
                "effort": rng.choice(("low", "medium", "high")),
                "summary": "auto",
            }
            self.line("turn_context", ctx, self.clock.tick(5, 120))
        if text is None:
            text = rng.choice(PROMPTS).format(f=rng.choice(self.project.files), w=rng.choice(WORDS))
        self.counts["turns"] += 1
        self.message("user", text, "input_text")
        self.event({"type": "user_message", "message": text, "images": []})
        if not self.old:
            self.event({"type": "token_count", "info": None, "rate_limits": None})

    def turn_close(self, answer: str | None = None) -> None:
        """The model's last message of a turn (`answer`, or random words)."""
        rng = self.rng
        if answer is None:
            answer = " ".join(rng.choices(WORDS, k=rng.randrange(20, 300)))
        self.message("assistant", answer, "output_text")
        self.event({"type": "agent_message", "message": answer})
        self.token_count(rng.randrange(100, 3000))

    def round(self) -> None:
        rng = self.rng
        self.reasoning()
        if rng.random() < 0.75:
            self.shell()
        else:
            self.patch()
        self.token_count(rng.randrange(20, 1500))

    def reasoning(self, summary: str | None = None) -> None:
        rng = self.rng
        if summary is None:
            summary = "**" + " ".join(rng.choices(WORDS, k=3)).capitalize() + "**"
        reasoning = {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": summary}],
            "content": None,
            "encrypted_content": "gAAAAAB" + self.g.pools.base64(rng, rng.randrange(800, 9_000)),
        }
        self.line("response_item", reasoning, self.clock.tick(1, 20))
        self.event({"type": "agent_reasoning", "text": summary})

    def shell(self, script: str | None = None, output: str | None = None, code: int | None = None) -> None:
        """A shell call: random, or `script` printing `output` and exiting with `code` (always echoed in an
        `exec_command_end` by the versions that write one)."""
        rng = self.rng
        cid = self.call_id()
        scripted = script is not None
        if script is None:
            script = rng.choice(SHELL_CMDS).format(f=rng.choice(self.project.files), w=rng.choice(WORDS), d="src")
            if rng.random() < 0.05:  # a patch piped through the shell
                script = f"apply_patch <<'EOF'\n{self._patch_text()}\nEOF"
        new_style = self.version >= "0.55"
        if new_style:
            name, args = "shell_command", {"command": script, "workdir": self.project.cwd, "timeout_ms": 120_000}
        else:
            name = "shell"
            args = {"command": ["bash", "-lc", script], "workdir": self.project.cwd, "timeout_ms": 120_000}
        call = {"type": "function_call", "name": name, "arguments": orjson.dumps(args).decode(), "call_id": cid}
        self.line("response_item", call, self.clock.tick(0.5, 5))
        if output is None:
            output = self.g.pools.code_text(rng, _lognormal(rng, 1_800, 1.6, 20, 1 << 20))
        if code is None:
            code = 1 if rng.random() < 0.11 else 0
        self.counts["tool_calls"] += 1
        self.counts["failures"] += code != 0
        dur = round(rng.uniform(0.01, 40), 3)
        if new_style:
            out_text = f"Exit code: {code}\nWall time: {dur} seconds\nOutput:\n{output}"
        else:
            out_text = orjson.dumps(
                {"output": output, "metadata": {"exit_code": code, "duration_seconds": dur}}
            ).decode()
        self.line("response_item", {"type": "function_call_output", "call_id": cid, "output": out_text}, self.clock.t)
        if new_style and (scripted or rng.random() < 0.8):
            self.event(
                {
                    "type": "exec_command_end",
                    "call_id": cid,
                    "command": ["bash", "-lc", script],
                    "cwd": self.project.cwd,
                    "stdout": output,
                    "stderr": "",
                    "aggregated_output": output,
                    "exit_code": code,
                    "duration": {"secs": int(dur), "nanos": 0},
                    "formatted_output": output[:8000],
                }
            )

    def _patch_text(self) -> str:
        rng = self.rng
        parts = ["*** Begin Patch"]
        for _ in range(rng.randrange(1, 4)):
            f = rng.choice(self.project.files)
            if rng.random() < 0.2:
                body = self.g.pools.code_text(rng, _lognormal(rng, 3_000, 1.2, 100, 200_000))
                parts.append(f"*** Add File: {f}")
                parts.extend("+" + x for x in body.splitlines())
            else:
                parts.append(f"*** Update File: {f}")
                parts.append(f"@@ def {rng.choice(WORDS)}")
                old = self.g.pools.code_text(rng, rng.randrange(40, 1200)).splitlines()
                new = self.g.pools.code_text(rng, rng.randrange(40, 1600)).splitlines()
                parts.extend("-" + x for x in old)
                parts.extend("+" + x for x in new)
        parts.append("*** End Patch")
        return "\n".join(parts)

    def patch(self, text: str | None = None) -> None:
        """An apply_patch call: a random patch (that fails now and then), or `text`, applied."""
        rng = self.rng
        cid = self.call_id()
        patch = self._patch_text() if text is None else text
        self.counts["tool_calls"] += 1
        if self.old:
            args = orjson.dumps({"command": ["apply_patch", patch]}).decode()
            call = {"type": "function_call", "name": "shell", "arguments": args, "call_id": cid}
            self.line("response_item", call, self.clock.tick(0.5, 5))
            out = orjson.dumps({"output": "Done!", "metadata": {"exit_code": 0, "duration_seconds": 0.0}}).decode()
            self.line("response_item", {"type": "function_call_output", "call_id": cid, "output": out}, self.clock.t)
            return
        item = {
            "type": "custom_tool_call",
            "status": "completed",
            "call_id": cid,
            "name": "apply_patch",
            "input": patch,
        }
        self.line("response_item", item, self.clock.tick(0.5, 5))
        ok = text is not None or rng.random() > 0.06
        self.counts["failures"] += not ok
        files = [ln.split(": ", 1)[1] for ln in patch.splitlines() if ln.startswith(("*** Update", "*** Add"))]
        text = "Success. Updated the following files:\n" + "\n".join(f"M {f}" for f in files) if ok else "Failed"
        meta = {"exit_code": 0 if ok else 1, "duration_seconds": 0.0}
        out = orjson.dumps({"output": text, "metadata": meta}).decode()
        self.line("response_item", {"type": "custom_tool_call_output", "call_id": cid, "output": out}, self.clock.t)
        self.event({"type": "patch_apply_end", "call_id": cid, "stdout": text, "stderr": "", "success": ok})

    # -- Codex 0.16x (the shapes of the recorded rollouts in tests/fixtures/sessions)

    def modern_header(self) -> None:
        rng, b = self.rng, self.g.boilerplate
        t = self.clock.t
        cwd = self.project.cwd
        meta: dict[str, Any] = {
            "account_scoped": True,
            "session_id": self.session_id,
            "id": self.session_id,
            "timestamp": iso(t),
            "cwd": cwd,
            "runtime_workspace_roots": [cwd],
            "originator": "codex_cli_rs",
            "cli_version": self.version,
            "source": "cli",
            "thread_source": "user",
            "model_provider": "openai",
            "base_instructions": {"text": b.codex_base, "provenance": {"type": "model", "model": self.model}},
            "history_mode": "paginated",
            "context_window": {"window_id": _uuid(rng)},
            "git": {"commit_hash": _tok(rng, 40).lower(), "branch": rng.choice(BRANCHES) or "main"},
        }
        self.line("session_meta", meta, t)
        self.turn_id = _uuid(rng)
        developer = [{"type": "input_text", "text": x} for x in b.codex_developer]
        self.item({"type": "message", "id": "msg_" + _uuid(rng), "role": "developer", "content": developer}, t)
        day = iso(t)[:10]
        env = (
            f"<environment_context>\n  <cwd>{cwd}</cwd>\n  <shell>bash</shell>\n  <current_date>{day}</current_date>\n"
            "  <timezone>Etc/UTC</timezone>\n</environment_context>"
        )
        texts = [env]
        if rng.random() < 0.5:
            agents = self.g.pools.code_text(rng, rng.randrange(500, 6000))
            texts.insert(0, f"# AGENTS.md instructions for {cwd}\n\n<INSTRUCTIONS>\n{agents}\n</INSTRUCTIONS>")
        content = [{"type": "input_text", "text": x} for x in texts]
        self.item({"type": "message", "id": "msg_" + _uuid(rng), "role": "user", "content": content}, t)
        envs = {"local": {"cwd": cwd, "status": "available", "shell": "bash"}}
        state = {
            "agents_md": {},
            "collaboration_mode": {"mode": "default", "model": self.model, "instructions": _tok(rng, 40).lower()},
            "environments": {"environments": envs, "current_date": day, "timezone": "Etc/UTC"},
            "host_skills": {"body": b.codex_skills, "includeInstructions": True},
            "model": self.model,
            "permissions": {"instructions": _tok(rng, 40).lower(), "approved_command_prefixes": []},
            "tools": {"multi_agent_v1": "Tools for spawning and managing sub-agents."},
        }
        self.line("world_state", {"full": True, "state": state}, self.clock.tick(0.001, 0.01))

    def modern_turn(self) -> None:
        rng = self.rng
        self.modern_turn_open()
        for _ in range(rng.randrange(1, 16)):
            self.modern_round()
            if self.out.bytes >= self.budget:
                break
        self.modern_turn_close()

    def modern_turn_open(self, text: str | None = None) -> None:
        """A 0.16x turn's start, context and settings, and the person's prompt (`text`, or a random one)."""
        rng = self.rng
        cwd = self.project.cwd
        if self.counts["turns"]:
            self.turn_id = _uuid(rng)
        self.turn_total = dict.fromkeys(self.turn_total, 0)
        t = self.clock.tick(5, 120)
        started: dict[str, Any] = {"type": "task_started", "turn_id": self.turn_id, "root_turn_id": self.turn_id}
        started |= {"started_at": int(t), "model_context_window": 258_400, "collaboration_mode_kind": "default"}
        self.line("event_msg", started, t)
        writable = [{"path": {"type": "path", "path": cwd}, "access": "write"}]
        writable += [
            {"path": {"type": "special", "value": {"kind": k}}, "access": "write"} for k in ("slash_tmp", "tmpdir")
        ]
        profile = {
            "type": "managed",
            "file_system": {"type": "restricted", "entries": writable},
            "network": "restricted",
        }
        ctx = {
            "turn_id": self.turn_id,
            "cwd": cwd,
            "approval_policy": "on-request",
            "permission_profile": profile,
            "model": self.model,
            "collaboration_mode": {"mode": "default", "settings": {"model": self.model, "reasoning_effort": "medium"}},
            "summary": "auto",
            "sandbox_policy": {"type": "workspace-write", "network_access": False},
        }
        self.line("turn_context", ctx, self.clock.tick(0.001, 0.01))
        settings: dict[str, Any] = {"model": self.model, "model_provider_id": "openai", "approval_policy": "on-request"}
        settings |= {"permission_profile": profile, "cwd": cwd, "runtime_workspace_roots": [cwd]}
        self.event({"type": "thread_settings_applied", "thread_id": self.session_id, "thread_settings": settings})
        if text is None:
            text = rng.choice(PROMPTS).format(f=rng.choice(self.project.files), w=rng.choice(WORDS))
        self.counts["turns"] += 1
        mid = "msg_" + _uuid(rng)
        content = [{"type": "input_text", "text": text}]
        self.item({"type": "message", "id": mid, "role": "user", "content": content}, self.clock.tick(0.01, 0.1))
        self.completed({"type": "UserMessage", "id": _uuid(rng), "content": [{"type": "text", "text": text}]})

    def modern_turn_close(self, answer: str | None = None) -> None:
        """The model's last message (`answer`, or random words) and the turn's end."""
        rng = self.rng
        if answer is None:
            answer = " ".join(rng.choices(WORDS, k=rng.randrange(20, 300)))
        mid = "msg_" + _tok(rng, 24).lower()
        self.completed({"type": "AgentMessage", "id": mid, "content": [{"type": "Text", "text": answer}]})
        out = [{"type": "output_text", "text": answer, "annotations": []}]
        message = {"type": "message", "status": "completed", "id": mid, "role": "assistant", "content": out}
        self.item(message, self.clock.tick(0.01, 1))
        self.token_count(rng.randrange(100, 3000))
        done = {"type": "task_complete", "turn_id": self.turn_id, "last_agent_message": answer[:2000]}
        self.event(done | {"duration_ms": rng.randrange(2_000, 900_000)})

    def modern_round(self) -> None:
        rng = self.rng
        self.modern_reasoning()
        if rng.random() < 0.75:
            self.modern_shell()
        else:
            self.modern_patch()
        self.token_count(rng.randrange(20, 1500))

    def modern_reasoning(self, summary: str | None = None) -> None:
        rng = self.rng
        if summary is None:
            summary = "**" + " ".join(rng.choices(WORDS, k=3)).capitalize() + "**"
        rid = "rs_" + _tok(rng, 24).lower()
        self.completed({"type": "Reasoning", "id": rid, "summary_text": [summary], "raw_content": []})
        reasoning = {
            "type": "reasoning",
            "id": rid,
            "summary": [{"type": "summary_text", "text": summary}],
            "content": None,
            "encrypted_content": "gAAAAAB" + self.g.pools.base64(rng, rng.randrange(800, 9_000)),
        }
        self.item(reasoning, self.clock.tick(1, 20))

    def modern_shell(self, script: str | None = None, output: str | None = None, code: int | None = None) -> None:
        """An exec_command call: random, or `script` printing `output` and exiting with `code`."""
        rng = self.rng
        cid = self.call_id()
        cwd = self.project.cwd
        if script is None:
            script = rng.choice(SHELL_CMDS).format(f=rng.choice(self.project.files), w=rng.choice(WORDS), d="src")
            if rng.random() < 0.05:  # a patch piped through the shell
                script = f"apply_patch <<'EOF'\n{self._patch_text()}\nEOF"
        args = orjson.dumps({"cmd": script}).decode()
        call = {"type": "function_call", "status": "completed", "id": "fc_" + _tok(rng, 24).lower()}
        call |= {"name": "exec_command", "arguments": args, "call_id": cid}
        self.item(call, self.clock.tick(0.5, 5))
        if output is None:
            output = self.g.pools.code_text(rng, _lognormal(rng, 1_800, 1.6, 20, 1 << 20))
        if code is None:
            code = 1 if rng.random() < 0.11 else 0
        self.counts["tool_calls"] += 1
        self.counts["failures"] += code != 0
        dur = round(rng.uniform(0.01, 40), 4)
        command = ["/bin/bash", "-lc", script]
        done: dict[str, Any] = {"type": "CommandExecution", "id": cid, "process_id": str(rng.randrange(1000, 99999))}
        done |= {"command": command, "cwd": f"file://{cwd}", "parsed_cmd": [{"type": "unknown", "cmd": script}]}
        done |= {"source": "unified_exec_startup", "status": "failed" if code else "completed"}
        done |= {"aggregated_output": output, "exit_code": code, "duration": {"secs": int(dur), "nanos": 0}}
        self.completed(done)
        text = (
            f"Chunk ID: {_tok(rng, 6).lower()}\nWall time: {dur} seconds\nProcess exited with code {code}\n"
            f"Original token count: {len(output) // 4}\nOutput:\n{output}"
        )
        result = {"type": "function_call_output", "id": "fco_" + _uuid(rng), "call_id": cid, "output": text}
        self.item(result, self.clock.t)

    def modern_patch(self, text: str | None = None) -> None:
        """An apply_patch call: a random patch (that fails now and then), or `text`, applied."""
        rng = self.rng
        cid = self.call_id()
        patch = self._patch_text() if text is None else text
        self.counts["tool_calls"] += 1
        call = {"type": "custom_tool_call", "id": "ctc_" + _tok(rng, 24).lower(), "status": "completed"}
        call |= {"call_id": cid, "name": "apply_patch", "input": patch}
        self.item(call, self.clock.tick(0.5, 5))
        ok = text is not None or rng.random() > 0.06
        self.counts["failures"] += not ok
        files = [ln.split(": ", 1)[1] for ln in patch.splitlines() if ln.startswith(("*** Update", "*** Add"))]
        text = "Success. Updated the following files:\n" + "\n".join(f"M {f}" for f in files) if ok else "Failed"
        changes = {f"{self.project.cwd}/{f}": {"type": "update", "unified_diff": patch} for f in files[:1]}
        done = {"type": "FileChange", "id": cid, "changes": changes, "status": "completed" if ok else "failed"}
        self.completed(done | {"stdout": text, "stderr": ""})
        out = f"Exit code: {0 if ok else 1}\nWall time: {round(rng.uniform(0.01, 2), 1)} seconds\nOutput:\n{text}\n"
        result = {"type": "custom_tool_call_output", "id": "ctco_" + _uuid(rng), "call_id": cid, "output": out}
        self.item(result, self.clock.t)

    def run(self) -> int:
        if self.modern:
            self.modern_header()
            while self.out.bytes < self.budget:
                self.modern_turn()
            return self.out.close()
        self.header()
        while self.out.bytes < self.budget:
            self.turn()
            if self.old and self.rng.random() < 0.5:
                self.out.write({"record_type": "state"}, self.clock.t)
        return self.out.close()

    def tokens(self) -> Tokens:
        if self.old:
            return _zero()  # the old format recorded no usage
        inp, cached = self.total["input_tokens"], self.total["cached_input_tokens"]
        return {"input": inp - cached, "output": self.total["output_tokens"], "cache_read": cached, "cache_write": 0}


# ------------------------------------------------------------------------------------------- driver


class Generator:
    def __init__(self, out_dir: Path, size_mb: float, seed: int, now: datetime) -> None:
        self.out_dir = out_dir
        self.claude_dir = out_dir / "claude"
        self.codex_dir = out_dir / "codex"
        self.target = int(size_mb * 1024 * 1024)
        self.seed = seed
        self.now_dt = now
        self.now = now.timestamp()
        self.rng = random.Random(seed)
        self.pools = Pools(self.rng)
        self.boilerplate = Boilerplate(self.rng)
        self.stats = Stats()
        self.ws_projects, self.other_projects = _projects(self.rng)
        weights = [1.0 / (i + 1) ** 0.8 for i in range(len(self.other_projects))]
        self.other_weights = weights
        self.claude = Totals()
        self.codex = Totals()
        self.sessions: list[dict[str, Any]] = []

    def pick_project(self) -> Project:
        rng = self.rng
        if rng.random() < WORKSPACE_SHARE:
            return rng.choice(self.ws_projects)
        return rng.choices(self.other_projects, weights=self.other_weights)[0]

    def run(self) -> dict[str, Any]:
        rng = self.rng
        claude_target = int(self.target * CLAUDE_SHARE)
        codex_target = self.target - claude_target

        def cap(target: int) -> int:
            """No session holds more than a sixth of its provider's bytes: a small corpus has several too."""
            return max(8_000, target // 6)

        while self.claude.bytes < claude_target:
            left = claude_target - self.claude.bytes
            budget = min(_lognormal(rng, 900_000, 1.3, 8_000, 48 << 20), max(left, 8_000), cap(claude_target))
            project = self.pick_project()
            s = ClaudeSession(self, project, budget)
            files, nbytes = s.run()
            fmt = "modern" if s.modern else "legacy"
            self._count(
                self.claude, "claude-code", s.session_id, project, files, nbytes, s.tokens, s.out.path, s.counts, fmt
            )
        while self.codex.bytes < codex_target:
            left = codex_target - self.codex.bytes
            budget = min(_lognormal(rng, 500_000, 1.2, 8_000, 30 << 20), max(left, 8_000), cap(codex_target))
            project = self.pick_project()
            c = CodexSession(self, project, budget, archived=rng.random() < 0.05, old_format=rng.random() < 0.04)
            nbytes = c.run()
            fmt = "old" if c.old else "modern" if c.modern else "legacy"
            self._count(self.codex, "codex", c.session_id, project, 1, nbytes, c.tokens(), c.out.path, c.counts, fmt)
        return self.manifest()

    def _count(
        self,
        tot: Totals,
        provider: str,
        sid: str,
        project: Project,
        files: int,
        nbytes: int,
        tokens: Tokens,
        path: Path,
        counts: Counter[str],
        fmt: str,
    ) -> None:
        tot.files += files
        tot.bytes += nbytes
        tot.sessions += 1
        tot.add_tokens(tokens, project.in_ws)
        if project.in_ws:
            tot.ws_sessions += 1
            tot.ws_files += files
            tot.ws_bytes += nbytes
        rel = str(path.relative_to(self.out_dir))
        self.sessions.append(
            {"provider": provider, "id": sid, "path": rel, "cwd": project.cwd, "in_workspace": project.in_ws}
            | {"format": fmt, "files": files, "bytes": nbytes, "tokens": tokens}
            | {k: counts[k] for k in ("turns", "tool_calls", "failures", "task_notifications")}
        )

    def manifest(self) -> dict[str, Any]:
        def totals(t: Totals) -> dict[str, Any]:
            return {
                "files": t.files,
                "bytes": t.bytes,
                "sessions": t.sessions,
                "tokens": t.tokens,
                "workspace": {
                    "files": t.ws_files,
                    "bytes": t.ws_bytes,
                    "sessions": t.ws_sessions,
                    "tokens": t.ws_tokens,
                },
            }

        st = self.stats
        return {
            "seed": self.seed,
            "size_mb": self.target / (1024 * 1024),
            "now": self.now_dt.isoformat().replace("+00:00", "Z"),
            "workspace": WORKSPACE,
            "bytes": self.claude.bytes + self.codex.bytes,
            "providers": {"claude-code": totals(self.claude), "codex": totals(self.codex)},
            "lines": st.lines,
            "largest_line": st.largest_line,
            "broken_lines": dict(st.broken),
            "big_lines": dict(st.big_lines),
            "big_line_bytes": dict(st.big_bytes),
            "sessions": self.sessions,
        }


def generate(out_dir: str | Path, size_mb: float = 520, seed: int = 1, now: datetime = FIXED_NOW) -> dict[str, Any]:
    """Writes the corpus and its manifest (also returned). `out_dir` must not hold an older corpus."""
    out = Path(out_dir)
    for sub in ("claude", "codex"):
        if (out / sub).exists():
            raise FileExistsError(f"{out / sub} exists: generate into an empty directory")
    out.mkdir(parents=True, exist_ok=True)
    manifest = Generator(out, size_mb, seed, now).run()
    (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest


def describe(m: dict[str, Any]) -> str:
    mb = 1024 * 1024
    parts = []
    for name, p in m["providers"].items():
        ws = p["workspace"]
        formats = Counter(s.get("format", "legacy") for s in m["sessions"] if s["provider"] == name)
        parts.append(
            f"  {name:<12} {p['files']:>6} files {p['bytes'] / mb:>8.1f} MB {p['sessions']:>5} sessions"
            f"  (workspace: {ws['sessions']} sessions, {ws['bytes'] / mb:.1f} MB;"
            f" formats: {', '.join(f'{k} {n}' for k, n in sorted(formats.items()))})"
        )
    big = m["big_line_bytes"]
    parts.append(
        f"  {m['lines']} lines; largest {m['largest_line'] / mb:.1f} MB; bytes in lines >=1 MB:"
        f" {big.get('ge_1mb', 0) / mb:.0f} MB, 64 KB-1 MB: {big.get('ge_64kb', 0) / mb:.0f} MB,"
        f" 10-64 KB: {big.get('ge_10kb', 0) / mb:.0f} MB"
    )
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.analyze.generate", description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--size-mb", type=float, default=520.0, help="total corpus size (default 520)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--now", default=FIXED_NOW.isoformat(), help="the moment the corpus ends (ISO 8601)")
    args = ap.parse_args(argv)
    now = datetime.fromisoformat(args.now.replace("Z", "+00:00"))
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    t0 = time.perf_counter()
    try:
        m = generate(args.out_dir, args.size_mb, args.seed, now)
    except FileExistsError as exc:
        print(exc, file=sys.stderr)
        return 2
    dt = time.perf_counter() - t0
    print(f"wrote {m['bytes'] / 1024 / 1024:.1f} MB to {args.out_dir} in {dt:.1f} s (seed {args.seed}, now {m['now']})")
    print(describe(m))
    return 0


if __name__ == "__main__":
    sys.exit(main())
