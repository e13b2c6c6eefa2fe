"""The decision benchmark: does the decision name the work a careful engineer would pick?

    .venv/bin/python -m benchmarks.decide.run [--subset fast] [--json OUT] [--llm] [--min-hit-rate 0.9]

For each labelled history (see `generate.py` and `scenarios.py`): the session analyzer reads its corpus
(`analyze_sessions`, no cache, at a fixed moment), the orchestrator decides with the heuristic backend
(`make_decision`), and the hit rule (`hits.py`) judges the decision's title and task against the label. Prints
one row per history and the hit rate. Exit status 0, unless `--min-hit-rate` is given and missed (1), the
`--llm` checks fail (1), or a history named in `--only` does not exist (2).

`--llm` also drives the LLM backend against a scripted model on loopback (see `llm_check.py`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from benchmarks.decide.generate import NOW, SUBSETS, generate, load, select
from benchmarks.decide.hits import first_paragraph, judge
from benchmarks.decide.records import History
from orchestration.config import WorkspaceConfig, parse_config
from orchestration.decide.orchestrator import Outcome, make_decision
from orchestration.models import Insights
from orchestration.sessions import analyze_sessions

GOAL = 0.90
ROOT = Path(__file__).resolve().parents[2]


class Result(BaseModel):
    name: str
    summary: str
    target: str
    accepted: tuple[str, ...]
    label_why: str
    title: str  # "" when there was no decision
    first_paragraph: str
    source: str | None
    reason: str | None  # why there is no decision
    hit: bool
    why: str
    other_files: tuple[str, ...]
    skipped: dict[str, int]  # what the analyzer skipped
    seconds: float


def workspace_config(h: History, backend: str = "heuristic", llm_url: str | None = None) -> WorkspaceConfig:
    """The history's workspace, as a config file would state it."""
    decision: dict[str, object] = {"backend": backend}
    if llm_url is not None:
        decision["llm"] = {"base_url": llm_url, "model": "scripted", "timeout_s": 10}
    sessions = {
        "claude_dir": str(h.claude_dir),
        "codex_dir": str(h.codex_dir),
        "since_days": h.since_days,
        "max_sessions": h.max_sessions,
    }
    return parse_config({"workspace": {"repo": str(h.repo)}, "sessions": sessions, "decision": decision})


def analyze(h: History, cfg: WorkspaceConfig, now: datetime = NOW) -> Insights:
    return analyze_sessions(h.repo, cfg.sessions, now=now, cache_dir=None)


def decide(h: History, cfg: WorkspaceConfig, insights: Insights, now: datetime = NOW) -> Outcome:
    return make_decision(
        insights=insights,
        cfg=cfg,
        history=[],
        backlog=[],
        available=lambda _agent: True,
        repo=h.repo,
        now=now.timestamp(),
    )


def evaluate(h: History, now: datetime = NOW) -> Result:
    """Analyze, decide with the heuristic, judge."""
    t0 = time.perf_counter()
    cfg = workspace_config(h)
    insights = analyze(h, cfg, now)
    outcome = decide(h, cfg, insights, now)
    seconds = time.perf_counter() - t0
    d = outcome.decision
    common = {
        "name": h.name,
        "summary": h.summary,
        "target": h.label.target,
        "accepted": h.label.accepted,
        "label_why": h.label.why,
        "skipped": insights.skipped,
        "seconds": round(seconds, 4),
    }
    if d is None:
        why = f"no decision ({outcome.reason})"
        return Result(**common, title="", first_paragraph="", source=None, reason=outcome.reason, hit=False, why=why,
                      other_files=())  # fmt: skip
    verdict = judge(d.title, d.task, h.label, h.repo_files, str(h.repo))
    return Result(
        **common,
        title=d.title,
        first_paragraph=first_paragraph(d.task),
        source=d.source,
        reason=None,
        hit=verdict.hit,
        why=verdict.why,
        other_files=verdict.others,
    )


def hit_rate(results: Sequence[Result]) -> float:
    return sum(r.hit for r in results) / len(results) if results else 0.0


def table(results: Sequence[Result]) -> str:
    """Two lines per history: name, label, hit/miss and the title; then why."""
    w_name = max([len("history"), *(len(r.name) for r in results)])
    w_label = max([len("label"), *(len(r.target) for r in results)])
    pad = " " * (w_name + w_label + 4)
    lines = [f"{'history':<{w_name}}  {'label':<{w_label}}  hit?  title", "-" * (w_name + w_label + 82)]
    for r in results:
        title = r.title or "(no decision)"
        lines.append(f"{r.name:<{w_name}}  {r.target:<{w_label}}  {'HIT ' if r.hit else 'miss'}  {title}")
        lines.append(f"{pad}      {r.why}")
    return "\n".join(lines)


class Report(BaseModel):
    commit: str | None
    subset: str
    seed: int
    now: str
    histories: int
    hits: int
    hit_rate: float
    goal: float
    seconds: float
    results: list[Result]
    llm: list[dict[str, object]] | None = None


def commit() -> str | None:
    from orchestration.git import GitError
    from orchestration.git import out as git_out

    try:
        return git_out(["rev-parse", "--short", "HEAD"], ROOT) or None
    except GitError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.decide.run", description=__doc__.split("\n")[0])
    ap.add_argument("--subset", choices=SUBSETS, default="all")
    ap.add_argument("--only", nargs="+", default=[], metavar="NAME", help="just these histories")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, metavar="OUT", help="write every figure and decision to OUT")
    ap.add_argument("--keep", type=Path, metavar="DIR", help="generate into DIR (or reuse the histories there)")
    ap.add_argument("--llm", action="store_true", help="also check the LLM backend against a scripted model")
    ap.add_argument(
        "--min-hit-rate", type=float, metavar="X", help="exit 1 below this hit rate (a fraction, or a percentage)"
    )
    args = ap.parse_args(argv)
    try:
        select(args.subset, args.only)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="decide-bench-") as tmp:
        out = args.keep or Path(tmp)
        if args.keep and (args.keep / "histories.json").exists():
            wanted = set(args.only) if args.only else None
            histories = [h for h in load(args.keep) if (wanted is None or h.name in wanted)]
            histories = [h for h in histories if args.subset == "all" or h.fast]
        else:
            histories = generate(out, args.subset, args.seed, only=args.only)
        generated = time.perf_counter() - t0
        results = [evaluate(h) for h in histories]
        rate = hit_rate(results)
        hits = sum(r.hit for r in results)
        print(table(results))
        print()
        print(
            f"hit rate: {hits}/{len(results)} = {rate:.0%}   (goal >= {GOAL:.0%})   "
            f"[{len(results)} histories, generated in {generated:.1f} s, decided in "
            f"{sum(r.seconds for r in results):.1f} s]"
        )
        llm_rows: list[dict[str, object]] | None = None
        llm_ok = True
        if args.llm:
            from benchmarks.decide.llm_check import check_all, describe

            checks = check_all(histories)
            print()
            print(describe(checks))
            llm_rows = [c.model_dump() for c in checks]
            llm_ok = all(c.ok for c in checks)
        if args.json:
            report = Report(
                commit=commit(),
                subset=args.subset,
                seed=args.seed,
                now=NOW.isoformat(),
                histories=len(results),
                hits=hits,
                hit_rate=rate,
                goal=GOAL,
                seconds=round(time.perf_counter() - t0, 3),
                results=results,
                llm=llm_rows,
            )
            args.json.write_text(report.model_dump_json(indent=2))
    status = 0
    if args.min_hit_rate is not None:
        floor = args.min_hit_rate / 100 if args.min_hit_rate > 1 else args.min_hit_rate
        if rate < floor:
            print(f"hit rate {rate:.0%} is below --min-hit-rate {floor:.0%}", file=sys.stderr)
            status = 1
    if not llm_ok:
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
