"""Writes the decision benchmark's labelled histories.

    python -m benchmarks.decide.generate OUT_DIR [--subset fast] [--seed N] [--only NAME ...]

writes, per history,

    OUT_DIR/<name>/repo/                                   the repository: a small real file tree (a git repo)
    OUT_DIR/<name>/claude/projects/<encoded cwd>/*.jsonl   Claude Code transcripts
    OUT_DIR/<name>/codex/sessions/YYYY/MM/DD/rollout-*.jsonl   Codex rollouts
    OUT_DIR/<name>/repo-client/, dotfiles/ …               other directories that some sessions ran in

and OUT_DIR/histories.json: every history's record (paths, label, sessions, the lines broken on purpose).
Deterministic for a seed: each history draws from its own stream, seeded by the seed and its name, so a
subset writes the same bytes as the whole set (the paths inside the lines depend on OUT_DIR).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import TypeAdapter

from benchmarks.analyze.generate import Generator
from benchmarks.decide.builder import Builder, Scenario
from benchmarks.decide.records import History
from benchmarks.decide.scenarios import SCENARIOS
from benchmarks.decide.writers import history_generator

# The moment every history ends before (sessions lie in the days before it).
NOW = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)
SUBSETS = ("all", "fast")
MANIFEST = "histories.json"
_HISTORIES = TypeAdapter(list[History])


def select(subset: str = "all", only: Sequence[str] = ()) -> list[Scenario]:
    """The scenarios of a subset (`all` or `fast`), or the ones named in `only`."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r}: expected one of {', '.join(SUBSETS)}")
    if only:
        known = {s.name: s for s in SCENARIOS}
        missing = [n for n in only if n not in known]
        if missing:
            raise ValueError(f"unknown histories: {', '.join(missing)}")
        return [known[n] for n in only]
    return [s for s in SCENARIOS if subset == "all" or s.fast]


def generate(
    out_dir: str | Path,
    subset: str = "all",
    seed: int = 1,
    now: datetime = NOW,
    only: Sequence[str] = (),
    git: bool = True,
) -> list[History]:
    """Writes the histories into `out_dir` (which must not hold them already) and returns their records.
    `git`: make each repository a git repository (one commit, before the sessions; their edits stay
    uncommitted)."""
    out = Path(out_dir)
    chosen = select(subset, only)
    for sc in chosen:
        if (out / sc.name).exists():
            raise FileExistsError(f"{out / sc.name} exists: generate into an empty directory")
    out.mkdir(parents=True, exist_ok=True)
    base = Generator(out, 0, seed, now)
    histories: list[History] = []
    for sc in chosen:
        root = out / sc.name
        builder = Builder(history_generator(base, root, f"{seed}:{sc.name}"), root, git=git)
        sc.write(builder)
        histories.append(builder.build(sc))
    (out / MANIFEST).write_bytes(_HISTORIES.dump_json(histories, indent=2))
    return histories


def load(out_dir: str | Path) -> list[History]:
    """The records of histories generated into `out_dir` earlier."""
    return _HISTORIES.validate_json((Path(out_dir) / MANIFEST).read_bytes())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.decide.generate", description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--subset", choices=SUBSETS, default="all")
    ap.add_argument("--only", nargs="+", default=[], metavar="NAME", help="just these histories")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        histories = generate(args.out_dir, args.subset, args.seed, only=args.only)
    except (FileExistsError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    for h in histories:
        providers = sorted({s.provider for s in h.sessions})
        print(f"{h.name:<30} {len(h.sessions)} sessions ({', '.join(providers)})  label: {h.label.target}")
    print(f"wrote {len(histories)} histories to {args.out_dir} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
