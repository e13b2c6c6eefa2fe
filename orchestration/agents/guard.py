"""The guard: a small process that outlives nothing. It holds one end of a pipe whose other end belongs to
the worker process that started an agent (or a `shell.run` command); when that end closes without a word
(the worker process was killed, by SIGKILL or a hard time limit, or the whole worker went away), the guard
kills the agent's whole process group at once. No janitor, no restart needed.

`python -m orchestration.agents.guard PGID`. The watcher writes `done` before it closes its end when it has
ended the group itself, so the guard never signals a group id that may since have been reused.
"""

from __future__ import annotations

import sys

from orchestration.agents.process import KILL_GRACE_S, kill_group


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m orchestration.agents.guard PGID", file=sys.stderr)
        return 2
    pgid = int(argv[1])
    try:
        word = sys.stdin.buffer.readline()  # blocks until the watcher writes, or its end closes
    except (OSError, KeyboardInterrupt):
        word = b""
    if word.strip() == b"done":
        return 0
    kill_group(pgid, KILL_GRACE_S)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
