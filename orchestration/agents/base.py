"""What every agent runner shares: the running tally of one run and the event emitter it feeds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

Emit = Callable[[str, dict[str, Any]], None]

TEXT_LIMIT = 2000


@dataclass(frozen=True)
class EnvGrant:
    """Which of the worker's environment variables an agent CLI gets: exact names and name prefixes."""

    names: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    def grants(self, name: str) -> bool:
        return name in self.names or name.startswith(self.prefixes)


# What every agent gets: where programs are, a home, temp files, terminal and locale, proxies and CAs.
BASE_ENV = EnvGrant(
    names=frozenset(
        {
            "PATH",
            "HOME",
            "TMPDIR",
            "TERM",
            "LANG",
            "LANGUAGE",
            "TZ",
            "USER",
            "LOGNAME",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "no_proxy",
            "all_proxy",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
            "NODE_EXTRA_CA_CERTS",
        }
    ),
    prefixes=("LC_",),
)


def clip(text: str, limit: int = TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class RunTally:
    """Filled from the agent's event stream as it arrives."""

    session_id: str | None = None
    model: str | None = None
    num_turns: int = 0
    cost_usd: float = 0.0
    cost_reported: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    files: set[str] = field(default_factory=set)
    final_seen: bool = False
    success: bool | None = None  # None: the stream never said
    error: str | None = None
    summary: str = ""
    last_text: str = ""
    bad_lines: int = 0
    tool_calls: int = 0
    events: int = 0


def text_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def count(v: Any) -> int:
    """A token count from an agent's event, 0 for anything that is not a plausible one."""
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 else 0


def relative_to(path: str, worktree: Path) -> str:
    """A path the agent reported, relative to its worktree when inside it."""
    try:
        return str(Path(path).resolve().relative_to(worktree.resolve()))
    except (ValueError, OSError):
        return path


def parse_event(line: bytes, tally: RunTally) -> dict[str, Any] | None:
    """One line of an agent's JSON stream as an event object; blank lines are skipped and anything else
    (garbage, truncated JSON, a non-object) is counted in `bad_lines`, never raised."""
    line = line.strip()
    if not line:
        return None
    try:
        ev = orjson.loads(line)
    except orjson.JSONDecodeError:
        ev = None
    if not isinstance(ev, dict):
        tally.bad_lines += 1
        return None
    tally.events += 1
    return ev
