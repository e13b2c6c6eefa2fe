"""Incremental reading: what each session file contributed so far, and where its next read starts.

Files are keyed by path and identified by (device, inode); an entry is reused as is when size and mtime
are unchanged (no open at all), resumed at its byte offset when the file only grew (the bytes just
before the offset still match), and dropped for a full re-read when the file was replaced, truncated or
rewritten. Files outside the workspace keep only their identity and offset: no results, no reader state.

The cache is a pickle in ORCH_STATE_DIR (the user's own, 0700 directory), written atomically; a cache
that cannot be read (older format, damaged) is simply rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.files import write_atomic

log = logging.getLogger(__name__)

CACHE_VERSION = 6  # 6: shell commands and the agent's last message are kept as evidence
MARK_BYTES = 1024


@dataclass
class Entry:
    dev: int
    ino: int
    size: int
    mtime_ns: int
    offset: int  # bytes consumed: just past the last complete line
    marks: bytes  # digest of the first and the last KiB before `offset`, to notice a file rewritten in place
    in_workspace: bool | None
    reader: Any = None  # the provider's Reader (state + results); None for files outside the workspace


def marks_of(path: str, offset: int) -> bytes:
    """A digest of the head and of the bytes just before `offset`: an append leaves both alone; a
    rewrite (compaction, an editor saving in place) almost always changes one of them."""
    if offset <= 0:
        return b""
    try:
        with open(path, "rb") as fh:
            head = fh.read(min(offset, MARK_BYTES))
            start = max(0, offset - MARK_BYTES)
            fh.seek(start)
            tail = fh.read(offset - start)
    except OSError:
        return b""
    return hashlib.blake2b(head + b"\0" + tail, digest_size=16).digest()


def cache_file(cache_dir: Path, provider: str, root: str, workspace: str) -> Path:
    digest = hashlib.blake2b(f"{root}\0{workspace}".encode(), digest_size=8).hexdigest()
    return cache_dir / f"sessions-v{CACHE_VERSION}-{provider}-{digest}.pickle"


def load(path: Path | None) -> dict[str, Entry]:
    if path is None:
        return {}
    try:
        with path.open("rb") as fh:
            data = pickle.load(fh)
    except FileNotFoundError:
        return {}
    except Exception as exc:  # damaged or from another version: rebuild
        log.info("session cache %s unreadable (%s); rebuilding", path, exc)
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("files"), dict):
        return {}
    files: dict[str, Entry] = data["files"]
    return files


def save(path: Path | None, entries: dict[str, Entry]) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, pickle.dumps({"version": CACHE_VERSION, "files": entries}, pickle.HIGHEST_PROTOCOL))
    except OSError as exc:  # a read-only or full disk costs speed, never the analysis
        log.warning("cannot write session cache %s: %s", path, exc)


def result_file(cache_dir: Path, workspace: str, roots: dict[str, str]) -> Path:
    digest = hashlib.blake2b(f"{workspace}\0{sorted(roots.items())}".encode(), digest_size=8).hexdigest()
    return cache_dir / f"insights-v{CACHE_VERSION}-{digest}.bin"


def load_result(path: Path | None, signature: bytes) -> bytes | None:
    """The stored result of a run over exactly the same input, else None."""
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data[len(signature) :] if data[: len(signature)] == signature else None


def save_result(path: Path | None, signature: bytes, result: bytes) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, signature + result)
    except OSError as exc:
        log.warning("cannot write session result cache %s: %s", path, exc)
