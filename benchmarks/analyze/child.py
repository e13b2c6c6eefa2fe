"""One measured analyzer run, in its own process: `python -m benchmarks.analyze.child '<json args>'`.

Imports the package first, then times `analyze_sessions` alone (perf_counter around the call), so interpreter
start-up and imports are not counted. Prints one JSON object on stdout: wall seconds, CPU seconds (own and
of any worker processes), memory (VmRSS before the call, VmHWM after, largest worker's ru_maxrss) and a
summary of the insights. `ORCH_STATE_DIR` comes from the environment (the runner sets a fresh one per
cold run and reuses it for the warm one). With `"extra_thread": true` a second (idle) thread is alive during
the call, as the progress bar's refresh thread is in `orchestrate analyze`.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from datetime import datetime
from typing import Any


def proc_status_kb(field: str) -> int:
    """A `kB` field of /proc/self/status (VmRSS, VmHWM); 0 where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def summary(p: Any) -> dict[str, Any]:
    return {
        "sessions": p.sessions,
        "turns": p.turns,
        "tool_calls": p.tool_calls,
        "tokens": p.tokens.model_dump(),
        "skipped": dict(p.skipped),
        "files": len(p.files),
        "tools": len(p.tools),
        "failures": sum(p.failures.values()),
        "goals": len(p.goals),
        "first_at": p.first_at,
        "last_at": p.last_at,
    }


def main(argv: list[str]) -> int:
    args = json.loads(argv[0])
    from orchestration.config import Sessions
    from orchestration.sessions import analyze_sessions

    cfg = Sessions(
        claude_dir=args["claude_dir"],
        codex_dir=args["codex_dir"],
        since_days=args.get("since_days", 14),
        max_sessions=args.get("max_sessions", 100_000),
    )
    now = datetime.fromisoformat(args["now"].replace("Z", "+00:00"))
    idle = threading.Event()
    if args.get("extra_thread"):
        threading.Thread(target=idle.wait, daemon=True).start()
    rss_before = proc_status_kb("VmRSS")
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    insights = analyze_sessions(args["repo"], cfg, now=now)
    seconds = time.perf_counter() - t0
    idle.set()
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "seconds": seconds,
        "cpu_self_s": (self1.ru_utime - self0.ru_utime) + (self1.ru_stime - self0.ru_stime),
        "cpu_children_s": (kids1.ru_utime - kids0.ru_utime) + (kids1.ru_stime - kids0.ru_stime),
        "rss_before_kb": rss_before,
        "hwm_kb": proc_status_kb("VmHWM") or self1.ru_maxrss,
        "children_maxrss_kb": kids1.ru_maxrss,
        "overall": summary(insights),
        "providers": {name: summary(p) for name, p in insights.providers.items()},
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
