"""Shared plumbing for the session readers: a tolerant JSONL reader, the workspace path test, coercions.

Session files are written by other programs, may be appended to while we read them, and change format
between CLI versions. Everything here therefore degrades to "count it in `skipped` and move on".
"""

from __future__ import annotations

import math
import os
import shlex
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from orchestration.models import parse_ts

# A single line larger than this is skipped unread (a pasted image or a giant tool output can make
# lines of several MB; nothing we need lives in a line this big). Module-level so tests can lower it.
MAX_LINE_BYTES = 64 * 1024 * 1024

# Prompts are kept only as long as a goal is shown (the analyzer cuts goals to 300 characters): a pasted
# log in a prompt must not grow memory or the cache.
MAX_PROMPT_CHARS = 1000

# (input, output, cache_read, cache_write): a plain tuple because one is built per API response line.
Usage = tuple[int, int, int, int]

# Evidence kept per shell command: the command as written, and the tail of a failing command's output (the
# summary lines of test runners and compilers are at the end). Bounded: a session can run thousands.
MAX_COMMAND_CHARS = 300
MAX_OUTPUT_CHARS = 1200
MAX_MESSAGE_CHARS = 600


@dataclass(slots=True)
class Run:
    """One shell command and how it ended. `target` names what ran, so that runs of the same thing group
    together across sessions (`pytest tests/a.py` and `pytest tests/b.py` are two targets, and so is
    `npm test` in two directories); `output` is kept for failures only."""

    target: str
    command: str
    ok: bool
    at: str | None = None
    output: str = ""


@dataclass
class SessionStats:
    """What one session file contributed, keyed so that the analyzer can deduplicate across files.

    Every counted thing has a key (message id + request id, tool call id, prompt uuid, or a synthetic
    `path:line:n` key when the file has none): a session copied into a second file (resume, fork) then
    counts once, as ccusage counts Claude usage once per `message.id:requestId`.
    """

    path: str
    mtime: float
    session_id: str = ""
    # None: no working directory seen at all; False: seen, but none inside the repo.
    in_workspace: bool | None = None
    prompts: dict[str, tuple[datetime | None, str]] = field(default_factory=dict)
    tool_calls: dict[str, str] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    usage: dict[str, Usage] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    ts_min: str | None = None
    ts_max: str | None = None
    skipped: Counter[str] = field(default_factory=Counter)
    # Trouble: interruptions by the user (keyed like everything else), and how the file ends so far:
    # on a failed tool call or command (its name), and/or on an interruption with no prompt after it.
    interruptions: dict[str, str] = field(default_factory=dict)
    sidechain_usage: set[str] = field(default_factory=set)  # usage keys whose counted line is a sidechain
    ends_on_error: str | None = None
    ends_interrupted: bool = False
    # Evidence for the decision: every shell command's outcome (keyed like tool calls), and the agent's
    # last message to the person (time, text).
    runs: dict[str, Run] = field(default_factory=dict)
    last_message: tuple[str | None, str] | None = None

    def said(self, ts: Any, text: Any) -> None:
        """The agent's text to the person; the last one is kept (where it left the work)."""
        if isinstance(text, str) and text.strip():
            self.last_message = (ts if isinstance(ts, str) else None, text.strip()[:MAX_MESSAGE_CHARS])

    def seen(self, value: Any) -> None:
        """Tracks the time span from raw ISO strings: comparing UTC ISO strings is ordering them, and
        parsing a timestamp on every line would cost more than the JSON parse of a small line."""
        if not isinstance(value, str) or len(value) < 19 or value[4] != "-" or value[10] != "T":
            return
        if self.ts_min is None or value < self.ts_min:
            self.ts_min = value
        if self.ts_max is None or value > self.ts_max:
            self.ts_max = value

    @property
    def first_at(self) -> datetime | None:
        return parse_ts(self.ts_min)

    @property
    def last_at(self) -> datetime | None:
        return parse_ts(self.ts_max)


class Workspace:
    """Answers "is this path inside the repo?" and "what is it called relative to the repo?".

    Both sides are resolved with realpath (a symlinked checkout must still match), results are cached
    because the same cwd repeats on every line, and only absolute paths can match: a relative or garbage
    cwd would otherwise resolve against *our* working directory.
    """

    def __init__(self, repo: str | os.PathLike[str]) -> None:
        self.root = os.path.realpath(os.path.expanduser(os.fspath(repo)))
        self.prefix = self.root if self.root.endswith(os.sep) else self.root + os.sep
        self._contains: dict[str, bool] = {}
        self._real: dict[str, str] = {}
        self._relative: dict[tuple[str, str | None], str | None] = {}

    def _realpath(self, path: str) -> str | None:
        real = self._real.get(path)
        if real is None:
            try:
                real = os.path.realpath(path)
            except (OSError, ValueError):  # embedded NUL, absurdly long names
                return None
            self._real[path] = real
        return real

    def _inside(self, path: str) -> bool:
        return path == self.root or path.startswith(self.prefix)

    def contains(self, cwd: str) -> bool:
        known = self._contains.get(cwd)
        if known is not None:
            return known
        result = False
        if cwd and os.path.isabs(cwd):
            real = self._realpath(cwd)
            result = real is not None and self._inside(real)
        if len(self._contains) < 100_000:
            self._contains[cwd] = result
        return result

    def relative(self, path: str, base: str | None = None) -> str | None:
        """`path` relative to the repo when inside it, else normalized as given; None for unusable."""
        key = (path, base)
        if key in self._relative:
            return self._relative[key]
        result = self._relative_uncached(path, base)
        if len(self._relative) < 100_000:
            self._relative[key] = result
        return result

    def _relative_uncached(self, path: str, base: str | None) -> str | None:
        if not path or "\x00" in path:
            return None
        if not os.path.isabs(path):
            if not (base and os.path.isabs(base)):
                return os.path.normpath(path)
            path = os.path.join(base, path)
        norm = os.path.normpath(path)
        if self._inside(norm):
            return os.path.relpath(norm, self.root) if norm != self.root else "."
        real = self._realpath(norm)
        if real is not None and self._inside(real):
            return os.path.relpath(real, self.root) if real != self.root else "."
        return norm


def read_objects(
    path: str,
    skipped: Counter[str],
    skip: Callable[[bytes], bool] | None = None,
    start: int = 0,
    pos: list[int] | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yields (byte offset of the line, object) for each complete JSON-object line; counts everything else.

    Reading starts at byte `start` (the end of what an earlier read consumed); when the iteration ends,
    `pos[0]` holds the offset just past the last complete line, where the next read resumes. The file is
    read in binary with a per-line size cap. A last line without a trailing newline is still being
    written by the CLI and is left for the next read. Invalid UTF-8 is decoded with replacement
    characters (the rest of the line is still useful). Never raises: a read error ends the file and is
    counted as `unreadable_file`. `skip(raw)` lets a reader drop lines it recognises as irrelevant
    without paying for the parse.
    """
    limit = MAX_LINE_BYTES
    offset = start
    try:
        with open(path, "rb") as fh:
            if start:
                fh.seek(start)
            while True:
                raw = fh.readline(limit + 1)
                if not raw:
                    return
                line_at = offset
                if not raw.endswith(b"\n"):
                    if len(raw) <= limit:
                        skipped["incomplete_line"] += 1
                        return
                    size = len(raw)
                    while raw and not raw.endswith(b"\n"):  # discard the rest of an oversized line
                        raw = fh.readline(limit + 1)
                        size += len(raw)
                    if not raw:  # an oversized line that is still being written
                        skipped["incomplete_line"] += 1
                        return
                    offset += size
                    skipped["oversized_line"] += 1
                    continue
                offset += len(raw)
                raw = raw.strip()
                if not raw:
                    continue
                if raw[:1] != b"{":
                    skipped["malformed_line"] += 1
                    continue
                if skip is not None and skip(raw):
                    continue
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    try:
                        obj = orjson.loads(raw.decode("utf-8", errors="replace"))
                    except orjson.JSONDecodeError:
                        skipped["malformed_line"] += 1
                        continue
                    skipped["invalid_utf8"] += 1
                if not isinstance(obj, dict):
                    skipped["malformed_line"] += 1
                    continue
                yield line_at, obj
    except OSError:
        skipped["unreadable_file"] += 1
    finally:
        if pos is not None:
            pos[0] = offset


def list_jsonl(
    root: str, skipped: Counter[str], accept: Callable[[str, str], bool] | None = None
) -> list[tuple[str, float]]:
    """Regular `*.jsonl` files below `root` with their mtimes; a missing root is simply empty.

    Unreadable directories and files that vanish between listing and stat are counted, not raised.
    `accept(dirpath, filename)` narrows the selection.
    """
    out: list[tuple[str, float]] = []
    if not os.path.isdir(root):
        return out

    def onerror(_exc: OSError) -> None:
        skipped["unreadable_dir"] += 1

    for dirpath, _dirnames, filenames in os.walk(root, onerror=onerror, followlinks=False):
        for name in filenames:
            if not name.endswith(".jsonl") or (accept is not None and not accept(dirpath, name)):
                continue
            full = os.path.join(dirpath, name)
            try:
                st = os.stat(full)
            except OSError:
                skipped["unreadable_file"] += 1
                continue
            if not stat.S_ISREG(st.st_mode):  # FIFOs, sockets: opening them could block
                skipped["not_a_file"] += 1
                continue
            out.append((full, st.st_mtime))
    return out


# Larger values are garbage, not usage; letting them through could overflow 64-bit JSON encoders later.
MAX_COUNT = 10**12
MAX_COST_USD = 1e6


def as_int(value: Any) -> int:
    """A plausible token count from whatever the file holds (bools, strings, NaN, negatives, absurd → 0)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value if 0 < value <= MAX_COUNT else 0
    if isinstance(value, float) and math.isfinite(value) and 0 < value <= MAX_COUNT:
        return int(value)
    return 0


def as_float(value: Any) -> float | None:
    """A plausible cost in USD, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) and 0 <= v <= MAX_COST_USD else None


def usage_wins(new: Usage, new_side: bool, old: Usage, old_side: bool) -> bool:
    """ccusage's rule for two lines of one API response: a main-chain line beats a sidechain one, else
    the larger total; on a tie the line seen first stays."""
    if new_side != old_side:
        return not new_side
    return sum(new) > sum(old)


SHELLS = frozenset({"bash", "sh", "zsh", "dash", "fish"})
# Commands whose first word alone says little: keep the subcommand too (`git push`, `npm test`).
SUBCOMMAND_TOOLS = frozenset(
    {
        "git",
        "npm",
        "pnpm",
        "yarn",
        "npx",
        "bun",
        "bunx",
        "cargo",
        "go",
        "uv",
        "poetry",
        "pip",
        "pip3",
        "docker",
        "kubectl",
        "gh",
        "dotnet",
        "make",
        "just",
        "deno",
        "mix",
        "bundle",
        "rake",
    }
)
_WRAPPERS = frozenset({"sudo", "env", "time", "nice", "command", "exec"})


def shell_script(command: Any) -> str | None:
    """The script a shell call runs: `["bash", "-lc", S]` → S, other argv joined, strings as-is."""
    if isinstance(command, str):
        return command
    if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
        return None
    if (
        len(command) >= 3
        and os.path.basename(command[0]) in SHELLS
        and command[1].startswith("-")
        and "c" in command[1]
    ):
        return str(command[2])
    return " ".join(command)


_SHELL_OPERATORS = frozenset({"|", "||", "&&", ";", ">", ">>", "<", "2>", "2>&1", "&>", "&", "|&"})
# Options whose value says what ran (`pytest -k parse`, `go test -run TestX`): kept in a target.
_NAMING_OPTIONS = frozenset({"-k", "-run", "--run", "--test", "-p", "--package", "--filter", "--grep", "-t"})
MAX_TARGET_ARGS = 4


def _first_command(script: str | None) -> tuple[list[str], str | None]:
    """The words of the first real command in a script (skipping `cd …`, exports and env assignments,
    sudo-like wrappers) and the directory a leading `cd` moved to."""
    if not script:
        return [], None
    first_line = script.strip().split("\n", 1)[0]
    segments = [s.strip() for s in first_line.replace("||", "&&").replace(";", "&&").split("&&")]
    moved: str | None = None
    for segment in segments:
        if segment == "cd":
            continue
        if segment.startswith("cd "):
            where = _words(segment)[1:2]
            moved = where[0] if where else moved
            continue
        if not segment or segment.startswith(("export ", "source ", "set ", ". ")):
            continue
        words = _words(segment)
        while words and ("=" in words[0].split("/", 1)[0] or words[0] in _WRAPPERS):
            words.pop(0)
        if words:
            return words, moved
    return [], moved


def _words(segment: str) -> list[str]:
    try:
        return shlex.split(segment, posix=True)
    except ValueError:
        return segment.split()


def command_key(script: str | None) -> str:
    """A short name for a failing command: its first word(s), skipping `cd … &&`, env assignments, sudo."""
    return _key(_first_command(script)[0])


def command_target(script: str | None, cwd: str | None = None) -> str:
    """What a command ran, specific enough to tell two problems apart: the command with its arguments (test
    files, test ids, packages; options dropped but those that name tests) and, when it did not run at the
    repository's root, the directory (`npm test (in web)`). `cwd` is the shell's directory relative to
    the repository."""
    return _target(*_first_command(script), cwd)


def command_names(script: str | None, cwd: str | None = None) -> tuple[str, str]:
    """`command_key` and `command_target` of one script, parsed once (a session runs thousands of commands)."""
    words, moved = _first_command(script)
    return _key(words), _target(words, moved, cwd)


def split_target(target: str) -> tuple[str, str | None]:
    """A target's command and the directory it ran in: `npm test (in web)` is (`npm test`, `web`)."""
    command, sep, where = target.partition(" (in ")
    return command, (where[:-1] if sep and where.endswith(")") else None)


def _key(words: list[str]) -> str:
    if not words:
        return "shell"
    head = os.path.basename(words[0]) or words[0]
    rest = [w for w in words[1:] if not w.startswith("-")]
    if head.startswith("python") and len(words) > 2 and words[1] == "-m":
        return f"{head} -m {words[2]}"[:80]
    if head in SUBCOMMAND_TOOLS and rest:
        return f"{head} {rest[0]}"[:80]
    return head[:80]


def _target(words: list[str], moved: str | None, cwd: str | None) -> str:
    if not words:
        return "shell"
    head = os.path.basename(words[0]) or words[0]
    kept = [head]
    rest = words[1:]
    if head.startswith("python") and len(rest) >= 2 and rest[0] == "-m":
        kept += rest[:2]
        rest = rest[2:]
    args: list[str] = []
    i = 0
    while i < len(rest) and len(args) < MAX_TARGET_ARGS:
        word = rest[i]
        if word in _SHELL_OPERATORS or word.startswith(("|", ">", "2>")):
            break
        if word in _NAMING_OPTIONS and i + 1 < len(rest):
            args += [word, rest[i + 1]]
            i += 2
            continue
        # An option's value names nothing (`--pretty false`, `-n 4`, `--tb short`): a bare word after an
        # option is kept only when it can name a test or a path.
        after_option = i > 0 and rest[i - 1].startswith("-") and "=" not in rest[i - 1]
        if not word.startswith("-") and not (after_option and _option_value(word)):
            args.append(word)
        i += 1
    target = " ".join([*kept, *args])[:200]
    where = os.path.normpath(os.path.join(cwd or ".", moved)) if moved else os.path.normpath(cwd or ".")
    if where not in (".", "") and not where.startswith("..") and not os.path.isabs(where):
        target += f" (in {where})"
    return target


_OPTION_VALUES = frozenset({"true", "false", "yes", "no", "auto", "short", "long", "line", "native", "json", "text"})


def _option_value(word: str) -> bool:
    return word.lower() in _OPTION_VALUES or word.isdigit()


def output_text(content: Any) -> str:
    """The text of a tool result (a string, or a list of text blocks), its tail kept."""
    if isinstance(content, list):
        content = "\n".join(b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
    if not isinstance(content, str):
        return ""
    return content[-MAX_OUTPUT_CHARS:]
