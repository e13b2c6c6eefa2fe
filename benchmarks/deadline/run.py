"""The deadline benchmark: how soon after a cycle's deadline the agent supervisor has ended an agent that will
not stop, next to the kill grace it allows and to an agent that stops when asked, in one run.

    python -m benchmarks.deadline.run [--runs 20] [--ahead 2] [--children 2] [--json OUT]

Each round drives `orchestration.agents.process.supervise` (with its own kill grace, KILL_GRACE_S) twice on a
stand-in agent (`stand_in.py`) in its own process group, with the deadline `--ahead` seconds after the
start: once "stubborn" (it and its `--children` children, one with a grandchild, ignore SIGTERM and keep the
agent's stdout open), once "polite" (they exit on SIGTERM: the baseline). Meanwhile this process watches
the group's processes in /proc and notes when the last one is gone (exited, or a zombie).

Prints, for each kind: seconds from the deadline to the first SIGTERM, to the last process of the group gone,
and to `supervise` returning (p50 and max), then the stubborn agent's worst case as a ratio of KILL_GRACE_S.
Exit status 0; 1 when a run did not end with the deadline or left a process behind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from statistics import median
from typing import Any

from orchestration.agents.process import KILL_GRACE_S, Verdict, supervise

STAND_IN = Path(__file__).resolve().parent / "stand_in.py"
POLL_S = 0.002
KINDS = ("stubborn", "polite")


def live_member(pid: int, pgid: int) -> bool:
    """True while `pid` runs in group `pgid` (a zombie, an exited or a reused pid is not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] not in ("Z", "X", "x") and int(fields[2]) == pgid


def group_members(pgid: int) -> set[int]:
    """Every live process of the group, from a scan of /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and live_member(int(entry.name), pgid):
            found.add(int(entry.name))
    return found


def one_run(kind: str, tmp: Path, ahead: float, children: int) -> dict[str, Any]:
    """One supervised stand-in, stopped by its deadline; seconds after the deadline of what happened."""
    term_log = tmp / f"term-{kind}-{time.time_ns()}.log"
    term_log.touch()
    started = threading.Event()
    pgid_box: list[int] = []
    outcome_box: list[Any] = []
    returned_box: list[float] = []
    deadline = time.time() + ahead

    def on_started(pid: int) -> None:
        pgid_box.append(pid)
        started.set()

    def supervised() -> None:
        outcome_box.append(
            supervise(
                [sys.executable, str(STAND_IN), kind, str(term_log), str(children)],
                cwd=tmp,
                env=dict(os.environ),
                deadline=deadline,
                idle_timeout_s=3600,
                on_line=lambda line: Verdict.CONTINUE,
                should_cancel=lambda: False,
                on_started=on_started,
                stderr_path=tmp / "stderr.log",
            )
        )
        returned_box.append(time.time())

    thread = threading.Thread(target=supervised, daemon=True)
    thread.start()
    if not started.wait(30):
        raise SystemExit("the stand-in did not start")
    pgid = pgid_box[0]
    expected = 1 + children + (1 if children else 0)
    while time.time() < deadline - 0.2 and len(group_members(pgid)) < expected:
        time.sleep(0.02)
    members = group_members(pgid)
    if len(members) < expected:
        raise SystemExit(f"the stand-in's group has {len(members)} processes before the deadline, not {expected}")
    while time.time() < deadline:
        time.sleep(POLL_S)
    gone_at = None
    while gone_at is None:
        members = {pid for pid in members if live_member(pid, pgid)}
        if not members:
            members = group_members(pgid)  # one full scan to be sure nothing new joined meanwhile
            if not members:
                gone_at = time.time()
                break
        time.sleep(POLL_S)
    thread.join(60)
    terms = [float(line.split()[1]) for line in term_log.read_text().splitlines() if line.strip()]
    outcome = outcome_box[0] if outcome_box else None
    return {
        "kind": kind,
        "stop_reason": str(outcome.stop_reason) if outcome else None,
        "term_s": (min(terms) - deadline) if terms else None,
        "gone_s": gone_at - deadline,
        "returned_s": (returned_box[0] - deadline) if returned_box else None,
        "left_behind": len(group_members(pgid)),
    }


def fmt(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return f"{'-':>8} {'-':>8}"
    return f"{median(known):>8.3f} {max(known):>8.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="rounds (one stubborn and one polite run each)")
    parser.add_argument("--ahead", type=float, default=2.0, help="seconds from a run's start to its deadline")
    parser.add_argument("--children", type=int, default=2, help="children the stand-in keeps (the first has one)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.ahead < 0.5 or args.children < 0:
        parser.error("--runs at least 1, --ahead at least 0.5, --children at least 0")
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        for _ in range(args.runs):
            for kind in KINDS:
                runs.append(one_run(kind, Path(tmp_name), args.ahead, args.children))
    print(f"seconds after the deadline, {args.runs} runs each (KILL_GRACE_S = {KILL_GRACE_S:g} s)")
    print(f"{'stand-in':<10} {'first SIGTERM':>17} {'group gone':>17} {'supervise returns':>17}")
    print(f"{'':<10} {'p50':>8} {'max':>8} {'p50':>8} {'max':>8} {'p50':>8} {'max':>8}")
    for kind in KINDS:
        mine = [r for r in runs if r["kind"] == kind]
        cols = [fmt([r[k] for r in mine]) for k in ("term_s", "gone_s", "returned_s")]
        print(f"{kind:<10} {cols[0]} {cols[1]} {cols[2]}")
    stubborn = [r["gone_s"] for r in runs if r["kind"] == "stubborn"]
    polite = [r["gone_s"] for r in runs if r["kind"] == "polite"]
    worst = max(stubborn)
    print(
        f"stubborn group gone, max / KILL_GRACE_S: {worst / KILL_GRACE_S:.3f}× "
        f"({worst - KILL_GRACE_S:+.3f} s beyond the grace; polite p50 {median(polite):.3f} s)"
    )
    bad = [r for r in runs if r["stop_reason"] != "deadline" or r["left_behind"]]
    for r in bad:
        print(f"not as expected: {r}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"kill_grace_s": KILL_GRACE_S, "runs": runs}, indent=2))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
