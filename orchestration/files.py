"""Writing a file so that a reader never sees it half written. Standard library only: any module may use it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PRIVATE = 0o600


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = PRIVATE) -> None:
    """Writes `data` to a new file next to `path`, then renames it over `path`.

    A reader sees the old content or the new, never a mix; a writer that dies midway leaves the old file
    alone (and no temporary file behind). Concurrent writers each use their own temporary file, and the
    last rename wins. The file gets `mode` (owner-only by default) whatever the umask. Not flushed to
    disk: after a power loss the file may hold either version, or be empty. Raises OSError, naming `path`
    when the failing call named no file (a write to a full disk).
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode != PRIVATE:  # mkstemp creates it owner-only
                os.fchmod(fh.fileno(), mode)
            fh.write(data)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if exc.filename is None and exc.errno is not None:  # a failed write (a full disk) names no file
            raise OSError(exc.errno, exc.strerror, str(target)) from exc
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
