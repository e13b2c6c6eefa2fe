"""The analyze benchmark: our session analyzer next to ccusage on the same generated corpus, in one run.

    python -m benchmarks.analyze.run [--size-mb 520] [--keep DIR] [--ccusage PATH] [--repeat 3]
                                     [--no-memory-check] [--no-cli] [--json OUT] [--check]

Steps (README.md says why each is measured the way it is):

1. generate the corpus (`benchmarks.analyze.generate`) into a temp dir, or reuse the one kept in `--keep DIR`,
   and read every file once so that both tools read from the page cache;
2. `ccusage --version` (its start-up, best of 5);
3. `--repeat` interleaved rounds of: `ccusage claude session --json --offline` (`CLAUDE_CONFIG_DIR=<corpus>/claude`)
   and `ccusage codex session --json --offline` (`CODEX_HOME=<corpus>/codex`), wall time of each process;
   ours cold: a fresh Python process with an empty `ORCH_STATE_DIR` times `analyze_sessions(workspace, ...)`
   inside the process; ours warm: the same call in a new process on that state dir, nothing changed;
   and (unless `--no-cli`) `orchestrate analyze CONFIG` as a user runs it, a whole process timed from spawn to
   exit like ccusage's: cold with an empty `ORCH_STATE_DIR`, then warm on that state dir, nothing changed;
   before the rounds, the start-ups: `python -c pass`, importing typer + rich + pydantic, `import orchestration.cli`,
   `orchestrate analyze` on no sessions (best of 5 each);
4. ours once more over all sessions (`repo="/"`) for the comparison with ccusage, which reports every session;
5. memory: a corpus twice the size, `--repeat` rounds of ccusage and ours cold; peak memory at 2S against S.

Prints a table (system, files, MB, seconds, MB/s, CPU seconds, peak RSS), the target ratios, and
sessions/tokens/prompts/tool calls/failures from the generator's ground truth, ccusage and ours side by side.
Exit status: 0 (1 with `--check` when a target is missed, 2 when ccusage is not installed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Any

from benchmarks.analyze import generate

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CCUSAGE = REPO_ROOT / "node_modules" / ".bin" / "ccusage"
MB = 1024 * 1024
PROVIDERS = ("claude-code", "codex")
TOKEN_KEYS = ("input", "output", "cache_read", "cache_write")
CCUSAGE_KEYS = {
    "input": "inputTokens",
    "output": "outputTokens",
    "cache_read": "cacheReadTokens",
    "cache_write": "cacheCreationTokens",
}
TARGET_THROUGHPUT = 0.5
TARGET_WARM = 10.0
TARGET_FLAT = 1.25  # "flat": a doubled corpus may cost at most this much more peak memory
# Whole processes, as a user runs them: `orchestrate analyze` against ccusage's two commands.
TARGET_CLI_COLD = 2.0  # ours cold at most this many times ccusage's time
TARGET_CLI_WARM = 5.0  # ours warm at least this many times faster than ccusage


# ------------------------------------------------------------------------------------------- processes


def _mem_kb(pid: int) -> int:
    """Proportional set size of one process (shared pages split between their users, so forked workers are
    not counted twice); its RSS where smaps_rollup is unavailable; 0 once it is gone."""
    for path, key in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
        try:
            with open(path, encoding="ascii") as fh:
                for line in fh:
                    if line.startswith(key):
                        return int(line.split()[1])
        except (OSError, ValueError):
            continue
    return 0


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc/<pid>/task/*/children."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children", encoding="ascii") as fh:
                    todo.extend(int(c) for c in fh.read().split())
            except (OSError, ValueError):
                continue
    return out


class TreeSampler(threading.Thread):
    """Samples the summed PSS of a process tree every 10 ms (catches worker pools that VmHWM would miss)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kb = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak_kb = max(self.peak_kb, sum(_mem_kb(p) for p in _tree(self.pid)))
            self.done.wait(0.01)


@dataclass
class Proc:
    seconds: float
    code: int
    stdout: bytes
    stderr: bytes
    cpu_s: float
    maxrss_kb: int  # the largest single process of the tree (wait4)
    tree_peak_kb: int  # sampled, summed over the tree (PSS)


def run_measured(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> Proc:
    """Runs `cmd` to completion; wall time from spawn to reaping, rusage of the whole tree via wait4."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
            cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        sampler = TreeSampler(proc.pid)
        sampler.start()
        _, status, ru = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        sampler.done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Proc(
            seconds=seconds,
            code=proc.returncode,
            stdout=out.read(),
            stderr=err.read(),
            cpu_s=ru.ru_utime + ru.ru_stime,
            maxrss_kb=ru.ru_maxrss,
            tree_peak_kb=sampler.peak_kb,
        )


# ------------------------------------------------------------------------------------------- corpus


@dataclass
class Corpus:
    root: Path
    manifest: dict[str, Any]
    files: dict[str, list[Path]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def claude_dir(self) -> Path:
        return self.root / "claude"

    @property
    def codex_dir(self) -> Path:
        return self.root / "codex"

    def nbytes(self, provider: str | None = None) -> int:
        return sum(self.sizes[n] for n in ([provider] if provider else list(self.files)))

    def nfiles(self, provider: str | None = None) -> int:
        return sum(len(self.files[n]) for n in ([provider] if provider else list(self.files)))


def list_corpus(root: Path, manifest: dict[str, Any]) -> Corpus:
    """The files both tools read: Claude's projects/**/*.jsonl, Codex's sessions/ and archived_sessions/."""
    claude = sorted((root / "claude" / "projects").rglob("*.jsonl"))
    codex = sorted((root / "codex" / "sessions").rglob("*.jsonl"))
    codex += sorted((root / "codex" / "archived_sessions").glob("*.jsonl"))
    files = {"claude-code": claude, "codex": codex}
    sizes = {name: sum(p.stat().st_size for p in paths) for name, paths in files.items()}
    return Corpus(root, manifest, files, sizes)


def get_corpus(where: Path, size_mb: float, seed: int) -> tuple[Corpus, float | None]:
    """Reuses a corpus with a matching manifest, else generates one; returns it and the generation time."""
    manifest_path = where / "manifest.json"
    if manifest_path.exists():
        m = json.loads(manifest_path.read_text())
        if m.get("seed") == seed and abs(m.get("size_mb", 0) - size_mb) < 1e-6:
            return list_corpus(where, m), None
        raise SystemExit(f"{where} holds another corpus (seed {m.get('seed')}, {m.get('size_mb')} MB): remove it")
    t0 = time.perf_counter()
    try:
        m = generate.generate(where, size_mb, seed)
    except FileExistsError as exc:
        raise SystemExit(f"{exc} (a partial corpus without manifest.json: remove it)") from exc
    return list_corpus(where, m), time.perf_counter() - t0


def warm_page_cache(corpus: Corpus) -> float:
    """Reads every file once (so both tools read from memory); returns the seconds it took."""
    t0 = time.perf_counter()
    buf = bytearray(1 << 20)
    for paths in corpus.files.values():
        for p in paths:
            with open(p, "rb", buffering=0) as fh:
                while fh.readinto(buf):
                    pass
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------------- measurements


@dataclass
class Row:
    system: str
    files: int
    nbytes: int
    seconds: float
    cpu_s: float | None = None
    peak_rss_kb: int | None = None
    note: str = ""

    @property
    def mbps(self) -> float:
        return self.nbytes / MB / self.seconds if self.seconds > 0 else float("inf")


def ccusage_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "NO_COLOR": "1",
        "TZ": "UTC",
        "LANG": "C.UTF-8",
    }
    env.update(extra)
    return env


def ccusage_version(ccusage: Path, home: Path, repeat: int = 5) -> tuple[float, str]:
    best, version = float("inf"), ""
    for _ in range(repeat):
        p = run_measured([str(ccusage), "--version"], ccusage_env(home))
        if p.code != 0:
            raise SystemExit(f"`{ccusage} --version` failed ({p.code}): {p.stderr.decode(errors='replace')[-2000:]}")
        best = min(best, p.seconds)
        version = p.stdout.decode().strip()
    return best, version


def ccusage_session(ccusage: Path, home: Path, corpus: Corpus, provider: str) -> tuple[Proc, Any]:
    """One run of `ccusage claude|codex session --json --offline` and its parsed report."""
    if provider == "claude-code":
        cmd, env = ["claude"], ccusage_env(home, CLAUDE_CONFIG_DIR=str(corpus.claude_dir))
    else:
        cmd, env = ["codex"], ccusage_env(home, CODEX_HOME=str(corpus.codex_dir))
    p = run_measured([str(ccusage), *cmd, "session", "--json", "--offline"], env)
    if p.code != 0:
        raise SystemExit(f"ccusage {cmd[0]} session failed ({p.code}): {p.stderr.decode(errors='replace')[-2000:]}")
    return p, json.loads(p.stdout)


@dataclass
class CcRound:
    """ccusage over one corpus, both providers, one after the other."""

    procs: dict[str, Proc]

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.procs.values())

    @property
    def cpu_s(self) -> float:
        return sum(p.cpu_s for p in self.procs.values())

    @property
    def peak_kb(self) -> int:
        return max(max(p.maxrss_kb, p.tree_peak_kb) for p in self.procs.values())


def ccusage_round(ccusage: Path, home: Path, corpus: Corpus) -> tuple[CcRound, dict[str, Any]]:
    procs: dict[str, Proc] = {}
    reports: dict[str, Any] = {}
    for prov in PROVIDERS:
        procs[prov], reports[prov] = ccusage_session(ccusage, home, corpus, prov)
    return CcRound(procs), reports


@dataclass
class Ours:
    proc: Proc
    result: dict[str, Any]

    @property
    def seconds(self) -> float:
        return float(self.result["seconds"])

    @property
    def cpu_s(self) -> float:
        return float(self.result["cpu_self_s"]) + float(self.result["cpu_children_s"])

    @property
    def workers(self) -> bool:
        return float(self.result["cpu_children_s"]) > 0

    @property
    def peak_kb(self) -> int:
        """Peak memory: the analyzing process's high-water mark (VmHWM, exact), or the sampled peak of the
        whole process tree (main + worker processes, PSS) when that is higher."""
        return max(int(self.result["hwm_kb"]), int(self.result["children_maxrss_kb"]), self.proc.tree_peak_kb)

    @property
    def growth_kb(self) -> int:
        return self.peak_kb - int(self.result["rss_before_kb"])


def run_ours(corpus: Corpus, repo: str, state_dir: Path, extra_thread: bool = False) -> Ours:
    args = {
        "repo": repo,
        "claude_dir": str(corpus.claude_dir),
        "codex_dir": str(corpus.codex_dir),
        "since_days": 14,
        "max_sessions": 100_000,
        "now": corpus.manifest["now"],
        "extra_thread": extra_thread,
    }
    env = dict(os.environ)
    env["ORCH_STATE_DIR"] = str(state_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    p = run_measured([sys.executable, "-m", "benchmarks.analyze.child", json.dumps(args)], env, cwd=REPO_ROOT)
    if p.code != 0:
        tail = p.stderr.decode(errors="replace")[-4000:]
        raise SystemExit(f"our analyzer failed (exit {p.code}) on {corpus.root} repo={repo}:\n{tail}")
    lines = p.stdout.decode().strip().splitlines()
    result = json.loads(lines[-1])
    if p.stderr.strip():
        result["stderr"] = p.stderr.decode(errors="replace")
    return Ours(p, result)


def fresh_state(scratch: Path) -> Path:
    """An empty ORCH_STATE_DIR for a cold run."""
    return Path(tempfile.mkdtemp(prefix="state-", dir=scratch))


def best_of(runs: list[Ours]) -> Ours:
    """The fastest run, carrying the highest memory peak seen over all of them."""
    best = min(runs, key=lambda o: o.seconds)
    worst = max(runs, key=lambda o: o.peak_kb)
    if worst is best:
        return best
    result = dict(best.result)
    for key in ("hwm_kb", "children_maxrss_kb", "rss_before_kb"):
        result[key] = worst.result[key]
    return Ours(dataclasses.replace(best.proc, tree_peak_kb=worst.proc.tree_peak_kb), result)


# ------------------------------------------------------------------------------------------- the CLI


@dataclass
class Cli:
    """One `orchestrate analyze` process: wall time from spawn to exit, like ccusage's."""

    proc: Proc

    @property
    def seconds(self) -> float:
        return self.proc.seconds

    @property
    def cpu_s(self) -> float:
        return self.proc.cpu_s

    @property
    def peak_kb(self) -> int:
        return max(self.proc.maxrss_kb, self.proc.tree_peak_kb)


def cli_config(path: Path, repo: str, claude_dir: Path, codex_dir: Path, since_days: int) -> Path:
    """A workspace config as a user writes one, pointing `sessions` at the corpus."""
    sessions = {
        "claude_dir": str(claude_dir),
        "codex_dir": str(codex_dir),
        "since_days": since_days,
        "max_sessions": 100_000,
    }
    path.write_text(json.dumps({"id": "bench", "workspace": {"repo": repo}, "sessions": sessions}, indent=2))
    return path


def since_days_for(manifest: dict[str, Any]) -> int:
    """The CLI analyzes up to the real now (it takes no `now`): a window reaching back to the corpus's start."""
    end = datetime.fromisoformat(str(manifest["now"]).replace("Z", "+00:00")).timestamp()
    start = end - generate.SPAN_DAYS * 86400
    return max(14, math.ceil((time.time() - start) / 86400) + 1)


def cli_env(state_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["ORCH_STATE_DIR"] = str(state_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return env


CLI = [sys.executable, "-m", "orchestration.cli", "analyze"]


def run_cli(config: Path, state_dir: Path, *extra: str) -> Cli:
    p = run_measured([*CLI, str(config), *extra], cli_env(state_dir), cwd=REPO_ROOT)
    if p.code != 0:
        tail = p.stderr.decode(errors="replace")[-4000:]
        raise SystemExit(f"`orchestrate analyze {config}` failed (exit {p.code}):\n{tail}")
    return Cli(p)


def best_wall(cmd: list[str], env: dict[str, str], repeat: int = 5) -> float:
    """The best wall time of `repeat` runs of a short command (a start-up)."""
    best = float("inf")
    for _ in range(repeat):
        p = run_measured(cmd, env, cwd=REPO_ROOT)
        if p.code != 0:
            raise SystemExit(f"{cmd} failed ({p.code}): {p.stderr.decode(errors='replace')[-2000:]}")
        best = min(best, p.seconds)
    return best


# The third-party imports every start of `orchestrate analyze` needs: the command line, the table, the models.
DEPS = "import typer, rich.console, rich.table; from pydantic import BaseModel"


@dataclass
class Startup:
    """Where a process of ours spends its time before it reads a session (best times)."""

    python_s: float  # `python -c pass`
    deps_s: float  # `python -c` importing typer, rich's console and table, and pydantic's BaseModel (DEPS)
    import_s: float  # `python -c "import orchestration.cli"`
    empty_s: float  # `orchestrate analyze` on a config whose session directories do not exist
    config: Path
    state: Path

    def again(self) -> None:
        """One more `orchestrate analyze` on no sessions (once per round: the best is the least disturbed)."""
        self.empty_s = min(self.empty_s, run_cli(self.config, self.state).seconds)


def measure_startup(scratch: Path) -> Startup:
    state = fresh_state(scratch)
    env = cli_env(state)
    none = scratch / "no-sessions"
    config = cli_config(scratch / "no-sessions.json", "/home/dev/src/none", none / "claude", none / "codex", 14)
    return Startup(
        python_s=best_wall([sys.executable, "-c", "pass"], env),
        deps_s=best_wall([sys.executable, "-c", DEPS], env),
        import_s=best_wall([sys.executable, "-c", "import orchestration.cli"], env),
        empty_s=best_wall([*CLI, str(config)], env),
        config=config,
        state=state,
    )


def cli_check(config: Path, state_dir: Path, cold: Ours) -> list[str]:
    """`orchestrate analyze --json` on the CLI's warm state must say what the in-process cold run said."""
    data = json.loads(run_cli(config, state_dir, "--json").proc.stdout)
    diffs = []
    for prov in PROVIDERS:
        ref, got = cold.result["providers"][prov], data["providers"][prov]
        for k in ("sessions", "turns", "tool_calls"):
            if int(got[k]) != int(ref[k]):
                diffs.append(f"{prov} {k} {got[k]} != {ref[k]}")
        for k in TOKEN_KEYS:
            if int(got["tokens"][k]) != int(ref["tokens"][k]):
                diffs.append(f"{prov} {k} tokens {got['tokens'][k]} != {ref['tokens'][k]}")
    verdict_ = "yes" if not diffs else "NO - " + "; ".join(diffs)
    return ["", f"`orchestrate analyze --json` (whole process) equals the in-process analysis: {verdict_}"]


# ------------------------------------------------------------------------------------------- report


def fmt_row(r: Row) -> str:
    cpu = f"{r.cpu_s:8.2f}" if r.cpu_s is not None else f"{'-':>8}"
    rss = f"{r.peak_rss_kb / 1024:9.0f}" if r.peak_rss_kb else f"{'-':>9}"
    mbps = f"{r.mbps:8.0f}" if r.nbytes else f"{'-':>8}"
    files = f"{r.files:6d}" if r.files else f"{'-':>6}"
    mb = f"{r.nbytes / MB:8.1f}" if r.nbytes else f"{'-':>8}"
    return f"{r.system:<34}{files}{mb}{r.seconds:9.3f}{mbps}{cpu}{rss}  {r.note}".rstrip()


def table(rows: list[Row]) -> str:
    head = f"{'system':<34}{'files':>6}{'MB':>8}{'seconds':>9}{'MB/s':>8}{'cpu s':>8}{'peak RSS':>9}"
    return "\n".join([head, "-" * len(head), *(fmt_row(r) for r in rows)])


def ccusage_totals(report: Any, keep: set[str] | None = None, codex: bool = False) -> dict[str, int]:
    """Sums ccusage's per-session rows (all, or those whose session matches one of `keep`)."""
    out = {k: 0 for k in ("sessions", *TOKEN_KEYS)}
    for row in report.get("sessions", []):
        sid = str(row.get("sessionId", ""))
        if keep is not None:
            # Claude rows are keyed by the session id; Codex rows by the rollout's path, which holds its id.
            hit = any(k in sid for k in keep) if codex else sid in keep
            if not hit:
                continue
        out["sessions"] += 1
        for k, ck in CCUSAGE_KEYS.items():
            out[k] += int(row.get(ck, 0) or 0)
    return out


def truth_totals(manifest: dict[str, Any], provider: str, workspace: bool) -> dict[str, int]:
    out = {k: 0 for k in ("sessions", "with_usage", *TOKEN_KEYS)}
    for s in manifest["sessions"]:
        if s["provider"] != provider or (workspace and not s["in_workspace"]):
            continue
        out["sessions"] += 1
        out["with_usage"] += any(s["tokens"].values())
        for k in TOKEN_KEYS:
            out[k] += s["tokens"][k]
    return out


def ours_totals(summary: dict[str, Any]) -> dict[str, int]:
    return {"sessions": int(summary["sessions"]), **{k: int(summary["tokens"][k]) for k in TOKEN_KEYS}}


def token_lines(label: str, t: dict[str, Any], ref: dict[str, Any] | None) -> str:
    cells = f"{label:<34}{t['sessions']:>9}" + "".join(f"{t[k]:>15,}" for k in TOKEN_KEYS)
    if ref is not None:
        diffs = [k for k in TOKEN_KEYS if t[k] != ref[k]]
        cells += "  = truth" if not diffs else "  DIFFERS: " + ", ".join(f"{k} {t[k] - ref[k]:+,}" for k in diffs)
    return cells


def tokens_section(
    corpus: Corpus, cc: dict[str, Any], ours_all: Ours, ours_ws: Ours, ws_ids: dict[str, set[str]]
) -> list[str]:
    m = corpus.manifest
    head = f"{'':<34}{'sessions':>9}" + "".join(f"{k:>15}" for k in TOKEN_KEYS)
    out = ["", "Tokens, all sessions (ccusage reports every session; ours run with repo='/'):", head]
    for prov in PROVIDERS:
        truth = truth_totals(m, prov, workspace=False)
        out.append(token_lines(f"{prov}: generator truth", truth, None))
        out[-1] += f"  ({truth['with_usage']} with usage)"
        out.append(token_lines(f"{prov}: ccusage", ccusage_totals(cc[prov]), truth))
        out.append(token_lines(f"{prov}: ours (repo=/)", ours_totals(ours_all.result["providers"][prov]), truth))
    out += ["", f"Tokens, workspace sessions only ({m['workspace']} and below):", head]
    for prov in PROVIDERS:
        truth = truth_totals(m, prov, workspace=True)
        out.append(token_lines(f"{prov}: generator truth", truth, None))
        out[-1] += f"  ({truth['with_usage']} with usage)"
        cc_ws = ccusage_totals(cc[prov], ws_ids[prov], codex=prov == "codex")
        out.append(token_lines(f"{prov}: ccusage (matched ids)", cc_ws, truth))
        out.append(token_lines(f"{prov}: ours (workspace)", ours_totals(ours_ws.result["providers"][prov]), truth))
    return out


COUNT_KEYS = ("sessions", "turns", "tool_calls", "failures")


def extraction_section(corpus: Corpus, ours_all: Ours, ours_ws: Ours) -> list[str]:
    """What ours extracted against what the generator wrote (ccusage extracts none of this)."""
    head = f"{'':<34}" + "".join(f"{k:>12}" for k in COUNT_KEYS)
    out = ["", "Extraction against the generator's truth (sessions, real prompts, tool calls, failed calls):", head]
    for prov in PROVIDERS:
        for label, o, ws in (("repo=/", ours_all, False), ("workspace", ours_ws, True)):
            truth = {k: 0 for k in COUNT_KEYS}
            notified = 0  # `<task-notification>` user lines: written by Claude Code, not prompts
            for sess in corpus.manifest["sessions"]:
                if sess["provider"] == prov and (sess["in_workspace"] or not ws):
                    truth["sessions"] += 1
                    for k in COUNT_KEYS[1:]:
                        truth[k] += int(sess.get(k, 0))
                    notified += int(sess.get("task_notifications", 0))
            got = o.result["providers"][prov]
            out.append(f"{prov + ': truth, ' + label:<34}" + "".join(f"{truth[k]:>12,}" for k in COUNT_KEYS))
            line = f"{prov + ': ours, ' + label:<34}" + "".join(f"{int(got[k]):>12,}" for k in COUNT_KEYS)
            diffs = [k for k in COUNT_KEYS if int(got[k]) != truth[k]]
            if diffs == ["turns"] and notified and int(got["turns"]) == truth["turns"] + notified:
                diffs = [f"turns (+{notified}: the <task-notification> lines are counted as prompts)"]
            out.append(line + ("  = truth" if not diffs else "  DIFFERS: " + ", ".join(diffs)))
    return out


def consistency_lines(corpus: Corpus, cold: Ours, warm: Ours, ours_all: Ours) -> list[str]:
    """The warm run must say exactly what the cold one said; broken lines must be counted, not fatal."""
    keys = ("overall", "providers")
    diff = [k for k in keys if cold.result[k] != warm.result[k]]
    out = [
        "",
        "Warm run's insights identical to the cold run's: "
        + ("yes" if not diff else f"NO - differ in {', '.join(diff)}"),
    ]
    if diff:
        for prov in PROVIDERS:
            c, w = cold.result["providers"].get(prov, {}), warm.result["providers"].get(prov, {})
            bad = {k: (c.get(k), w.get(k)) for k in set(c) | set(w) if c.get(k) != w.get(k)}
            if bad:
                out.append(f"  {prov}: (cold, warm) {bad}")
    skipped = ours_all.result["overall"]["skipped"]
    broken = corpus.manifest.get("broken_lines", {})
    seen = {k: skipped.get(k, 0) for k in broken}
    out.append(f"Lines written broken on purpose: {broken}; counted by ours (repo=/): {seen}")
    return out


def compile_bytecode() -> str:
    """Writes the package's `.pyc` files before anything is timed, as installing it does. Otherwise a process
    run with PYTHONDONTWRITEBYTECODE set (some shells and CI set it) compiles every module of ours from source
    at each start, and the whole-process figures measure the compiler."""
    import compileall

    ok = all(compileall.compile_dir(REPO_ROOT / pkg, quiet=1) for pkg in ("orchestration", "tasks"))
    note = " (PYTHONDONTWRITEBYTECODE is set: without this, every start would compile them again)"
    return ("orchestration/ and tasks/ compiled" if ok else "compileall failed") + (
        note if os.environ.get("PYTHONDONTWRITEBYTECODE") else ""
    )


def analyzer_revision() -> str:
    """The commit the analyzer came from, and whether orchestration/sessions had local changes."""
    try:
        rev = subprocess.run(  # noqa: S603 - fixed argv, no shell
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603 - fixed argv, no shell
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "orchestration/sessions"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (" + local changes in orchestration/sessions" if dirty else "")


def insight_lines(label: str, o: Ours) -> list[str]:
    out = [f"{label}:"]
    for prov in PROVIDERS:
        p = o.result["providers"].get(prov)
        if p is None:
            continue
        out.append(
            f"  {prov:<12} sessions {p['sessions']:>4}  turns {p['turns']:>5}  tool calls {p['tool_calls']:>6}"
            f"  files {p['files']:>4}  tools {p['tools']:>3}  failures {p['failures']:>5}  skipped {p['skipped']}"
        )
    return out


def fmt_list(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


# ------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.analyze.run", description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=float, default=520.0, help="corpus size S (default 520)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="keep (or reuse) the corpora in this directory instead of a temp dir")
    ap.add_argument("--ccusage", type=Path, default=DEFAULT_CCUSAGE, help="ccusage executable")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds; best time reported (default 3)")
    ap.add_argument(
        "--memory-check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also generate a corpus of 2S and compare peak memory (default: on)",
    )
    ap.add_argument(
        "--cli",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time `orchestrate analyze` as a user runs it (whole process, cold and warm; default: on)",
    )
    ap.add_argument("--json", type=Path, help="also write all figures to this JSON file")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args(argv)

    ccusage = args.ccusage
    if not (ccusage.exists() and os.access(ccusage, os.X_OK)):
        print(f"ccusage not found at {ccusage}: run `npm ci` (ccusage is pinned in package.json)", file=sys.stderr)
        return 2
    repeat = max(1, args.repeat)

    scratch = Path(tempfile.mkdtemp(prefix="orch-bench-analyze-"))
    corpus_root = args.keep if args.keep else scratch
    figures: dict[str, Any] = {"size_mb": args.size_mb, "seed": args.seed, "cpus": os.cpu_count()}
    try:
        home = scratch / "home"
        home.mkdir()
        size_tag = f"{args.size_mb:g}mb-seed{args.seed}"
        corpus, gen_s = get_corpus(corpus_root / f"corpus-{size_tag}", args.size_mb, args.seed)
        m = corpus.manifest
        print(f"corpus: {corpus.root} ({corpus.nbytes() / MB:.1f} MB, {corpus.nfiles()} files)", end="")
        print(f", generated in {gen_s:.1f} s" if gen_s is not None else ", reused")
        print(generate.describe(m))
        warm_s = warm_page_cache(corpus)
        print(f"page cache warmed: read {corpus.nbytes() / MB:.0f} MB in {warm_s:.2f} s")
        print(f"machine: {os.cpu_count()} CPUs; now={m['now']}; workspace={m['workspace']}; repeat={repeat}")
        revision = analyzer_revision()
        figures["analyzer_revision"] = revision
        print(f"analyzer: {revision}")
        print(f"bytecode: {compile_bytecode()}")
        print()

        # Interleaved rounds (ccusage, ours cold, ours warm), so that load from other users of the machine
        # hits both sides alike; the best time of each is reported.
        start_s, version = ccusage_version(ccusage, home)
        print(f"{version} at {ccusage} (start-up, best of 5: {start_s * 1000:.0f} ms)")
        ws = m["workspace"]
        startup: Startup | None = None
        config: Path | None = None
        if args.cli:
            startup = measure_startup(scratch)
            since = since_days_for(m)
            config = cli_config(scratch / "workspace.json", ws, corpus.claude_dir, corpus.codex_dir, since)
            print(
                f"ours: `{' '.join(CLI)} {config}` (since_days {since}); start-up, best of 5:"
                f" python {startup.python_s * 1000:.0f} ms, + typer, rich and pydantic"
                f" {(startup.deps_s - startup.python_s) * 1000:.0f} ms, + import orchestration.cli"
                f" {startup.import_s * 1000:.0f} ms, analyze on no sessions {startup.empty_s * 1000:.0f} ms"
            )
        load0 = os.getloadavg()[0]
        cc_rounds: list[CcRound] = []
        colds: list[Ours] = []
        warms: list[Ours] = []
        cli_colds: list[Cli] = []
        cli_warms: list[Cli] = []
        threaded: list[Ours] = []  # ours cold with a second thread alive: what a display thread would cost
        cli_state: Path | None = None
        cc_report: dict[str, Any] = {}
        for i in range(1, repeat + 1):
            cc, cc_report = ccusage_round(ccusage, home, corpus)
            cc_rounds.append(cc)
            state = fresh_state(scratch)
            colds.append(run_ours(corpus, ws, state))
            warms.append(run_ours(corpus, ws, state))  # a new process, same state dir, nothing changed
            note = ""
            if config is not None and startup is not None:
                cli_state = fresh_state(scratch)
                cli_colds.append(run_cli(config, cli_state))
                cli_warms.append(run_cli(config, cli_state))  # the same command again, nothing changed
                threaded.append(run_ours(corpus, ws, fresh_state(scratch), extra_thread=True))
                startup.again()
                note = (
                    f"; orchestrate analyze cold {cli_colds[-1].seconds:.3f} s, warm {cli_warms[-1].seconds:.3f} s;"
                    f" ours cold with a 2nd thread {threaded[-1].seconds:.3f} s"
                )
            print(
                f"  round {i}: ccusage {cc.procs['claude-code'].seconds:.3f} + {cc.procs['codex'].seconds:.3f} s,"
                f" ours cold {colds[-1].seconds:.3f} s, ours warm {warms[-1].seconds:.3f} s{note}"
            )
        cc_best = CcRound({p: min((r.procs[p] for r in cc_rounds), key=lambda x: x.seconds) for p in PROVIDERS})
        cc_peak_kb = max(r.peak_kb for r in cc_rounds)
        cold, warm = best_of(colds), best_of(warms)
        # while the corpus is still on disk (the memory check removes it)
        cli_lines = cli_check(config, cli_state, cold) if config is not None and cli_state is not None else []
        ours_all = run_ours(corpus, "/", fresh_state(scratch))
        print(f"  ours cold, repo=/: {ours_all.seconds:.3f} s")

        # memory at 2S
        big: Ours | None = None
        big_corpus: Corpus | None = None
        big_cc: CcRound | None = None
        if args.memory_check:
            big_size = args.size_mb * 2
            big_root = corpus_root / f"corpus-{big_size:g}mb-seed{args.seed}"
            big_corpus, big_gen_s = get_corpus(big_root, big_size, args.seed)
            gen_note = f"generated in {big_gen_s:.1f} s" if big_gen_s is not None else "reused"
            print(f"corpus 2S: {big_corpus.root} ({big_corpus.nbytes() / MB:.1f} MB, {gen_note})")
            print(generate.describe(big_corpus.manifest))
            warm_page_cache(big_corpus)
            if not args.keep:
                shutil.rmtree(corpus.root)  # at most one big corpus on disk at a time
            bigs: list[Ours] = []
            big_rounds: list[CcRound] = []
            for i in range(1, repeat + 1):
                big_rounds.append(ccusage_round(ccusage, home, big_corpus)[0])
                bigs.append(run_ours(big_corpus, ws, fresh_state(scratch)))
                print(f"  round {i} @2S: ccusage {big_rounds[-1].seconds:.3f} s, ours cold {bigs[-1].seconds:.3f} s")
            big = best_of(bigs)
            big_cc = min(big_rounds, key=lambda r: r.seconds)
        load1 = os.getloadavg()[0]

        # ---- report
        rows = [Row("ccusage --version (start-up)", 0, 0, start_s)]
        for prov in PROVIDERS:
            p = cc_best.procs[prov]
            name = f"ccusage {prov.split('-')[0]} session"
            rows.append(Row(name, corpus.nfiles(prov), corpus.nbytes(prov), p.seconds, p.cpu_s))
            rows[-1].peak_rss_kb = max(max(r.procs[prov].maxrss_kb, r.procs[prov].tree_peak_kb) for r in cc_rounds)
        cc_s = cc_best.seconds
        cc_row = Row("ccusage, both providers", corpus.nfiles(), corpus.nbytes(), cc_s, cc_best.cpu_s, cc_peak_kb)
        rows.append(cc_row)
        cc_net = Row("ccusage, minus 2x start-up", corpus.nfiles(), corpus.nbytes(), max(1e-9, cc_s - 2 * start_s))
        rows.append(cc_net)
        for label, o in (
            ("ours cold (workspace)", cold),
            ("ours warm (workspace)", warm),
            ("ours cold (repo=/)", ours_all),
        ):
            rows.append(Row(label, corpus.nfiles(), corpus.nbytes(), o.seconds, o.cpu_s, o.peak_kb))
        cli_cold = min(cli_colds, key=lambda c: c.seconds) if cli_colds else None
        cli_warm = min(cli_warms, key=lambda c: c.seconds) if cli_warms else None
        if startup is not None and cli_cold is not None and cli_warm is not None:
            rows.append(Row("python -c pass (start-up)", 0, 0, startup.python_s))
            rows.append(Row("python + typer, rich, pydantic", 0, 0, startup.deps_s))
            rows.append(Row("python -c 'import orchestration.cli'", 0, 0, startup.import_s))
            rows.append(Row("orchestrate analyze, no sessions", 0, 0, startup.empty_s))
            spawn = best_of(threaded)
            rows.append(
                Row("ours cold, 2nd thread (spawn)", corpus.nfiles(), corpus.nbytes(), spawn.seconds, spawn.cpu_s)
            )
            rows[-1].peak_rss_kb = spawn.peak_kb
            for label, c, runs in (
                ("orchestrate analyze cold", cli_cold, cli_colds),
                ("orchestrate analyze warm", cli_warm, cli_warms),
            ):
                peak = max(r.peak_kb for r in runs)
                rows.append(Row(label, corpus.nfiles(), corpus.nbytes(), c.seconds, c.cpu_s, peak))
        if big is not None and big_corpus is not None and big_cc is not None:
            n, nb = big_corpus.nfiles(), big_corpus.nbytes()
            rows.append(Row(f"ours cold @2S ({nb / MB:.0f} MB)", n, nb, big.seconds, big.cpu_s, big.peak_kb))
            rows.append(Row("ccusage, both providers @2S", n, nb, big_cc.seconds, big_cc.cpu_s, big_cc.peak_kb))
        print()
        print(table(rows))
        print(
            "(ours cold/warm: seconds inside the process around analyze_sessions only; peak = max of its VmHWM and"
            " the sampled PSS of its process tree.\n ccusage"
            + (" and `orchestrate analyze`" if cli_cold else "")
            + f": process wall time, start-up included. Best time of {repeat} round(s), highest peak. Load average"
            f" {load0:.2f} at start,"
            f" {load1:.2f} at end.)"
        )

        cold_mbps = corpus.nbytes() / MB / cold.seconds
        throughput = cold_mbps / cc_row.mbps
        throughput_net = cold_mbps / cc_net.mbps
        warm_ratio = cc_s / warm.seconds
        # The same ratios within each round (its runs were seconds apart, so under the same load): the median
        # is less sensitive to load that changed between rounds than the ratio of two best times.
        round_tp = [r.seconds / o.seconds for r, o in zip(cc_rounds, colds, strict=True)]
        round_warm = [r.seconds / o.seconds for r, o in zip(cc_rounds, warms, strict=True)]
        print()
        print("Targets (best times; per-round median and the rounds in brackets):")
        print(
            f"  ours cold MB/s / ccusage MB/s      = {throughput:6.2f}   (target >= {TARGET_THROUGHPUT})"
            f"  {verdict(throughput >= TARGET_THROUGHPUT)}   [median {median(round_tp):.2f}: {fmt_list(round_tp)};"
            f" vs ccusage minus its start-up: {throughput_net:.2f}]"
        )
        print(
            f"  ccusage cold s / ours warm s       = {warm_ratio:6.2f}   (target >= {TARGET_WARM:g})"
            f"  {verdict(warm_ratio >= TARGET_WARM)}   [median {median(round_warm):.2f}: {fmt_list(round_warm)}]"
        )
        ok = throughput >= TARGET_THROUGHPUT and warm_ratio >= TARGET_WARM
        cli_ratios: dict[str, Any] = {}
        if cli_cold is not None and cli_warm is not None:
            cold_x = cli_cold.seconds / cc_s
            warm_x = cc_s / cli_warm.seconds
            round_cold = [o.seconds / r.seconds for r, o in zip(cc_rounds, cli_colds, strict=True)]
            round_warm_cli = [r.seconds / o.seconds for r, o in zip(cc_rounds, cli_warms, strict=True)]
            print("  whole processes, `orchestrate analyze` against ccusage's two commands:")
            print(
                f"  orchestrate cold s / ccusage s     = {cold_x:6.2f}   (target <= {TARGET_CLI_COLD:g})"
                f"  {verdict(cold_x <= TARGET_CLI_COLD)}   [median {median(round_cold):.2f}: {fmt_list(round_cold)}]"
            )
            print(
                f"  ccusage s / orchestrate warm s     = {warm_x:6.2f}   (target >= {TARGET_CLI_WARM:g})"
                f"  {verdict(warm_x >= TARGET_CLI_WARM)}   [median {median(round_warm_cli):.2f}:"
                f" {fmt_list(round_warm_cli)}]"
            )
            ok = ok and cold_x <= TARGET_CLI_COLD and warm_x >= TARGET_CLI_WARM
            cli_ratios = {"cold": cold_x, "warm": warm_x, "round_cold": round_cold, "round_warm": round_warm_cli}
        flat: float | None = None
        if big is not None:
            flat = big.peak_kb / cold.peak_kb
            growth = big.growth_kb / max(1, cold.growth_kb)
            print(
                f"  peak RSS(2S) / peak RSS(S)         = {flat:6.2f}   (target ~1, <= {TARGET_FLAT})"
                f"  {verdict(flat <= TARGET_FLAT)}   [{cold.peak_kb / 1024:.0f} -> {big.peak_kb / 1024:.0f} MB;"
                f" above the post-import baseline: {cold.growth_kb / 1024:.0f} -> {big.growth_kb / 1024:.0f} MB,"
                f" x{growth:.2f}; main process VmHWM {int(cold.result['hwm_kb']) / 1024:.0f} ->"
                f" {int(big.result['hwm_kb']) / 1024:.0f} MB]"
            )
            ok = ok and flat <= TARGET_FLAT

        if startup is not None and cli_cold is not None and cli_warm is not None:
            print()
            spawn = best_of(threaded)
            print("Where `orchestrate analyze`'s time goes (best times; start-up = the same command on no sessions):")
            print(
                f"  start-up {startup.empty_s:.3f} s = python {startup.python_s:.3f} + imports of orchestration.cli"
                f" {startup.import_s - startup.python_s:.3f} + config, settings, the analyze command's own imports"
                f" and output {startup.empty_s - startup.import_s:.3f}"
            )
            print(
                f"  of the imports, typer, rich and pydantic alone take {startup.deps_s - startup.python_s:.3f} s"
                f" (`python -c '{DEPS}'`: {startup.deps_s:.3f} s)"
            )
            for label, c, inner in (("cold", cli_cold, cold), ("warm", cli_warm, warm)):
                rest = c.seconds - startup.empty_s - inner.seconds
                print(
                    f"  {label}: {c.seconds:.3f} s = start-up {startup.empty_s:.3f} s"
                    f" ({startup.empty_s / c.seconds:.0%})"
                    f" + analysis {inner.seconds:.3f} s (in-process)"
                    f" + the rest {rest:+.3f} s (redaction, output, noise)"
                )
            print(
                f"  with another thread alive the analyzer would start its workers with spawn instead of fork: cold"
                f" analysis {cold.seconds:.3f} s -> {spawn.seconds:.3f} s, cpu {cold.cpu_s:.2f} -> {spawn.cpu_s:.2f} s"
                " (`orchestrate analyze` draws its progress bar without a thread)"
            )
            net = cli_warm.seconds - startup.empty_s
            print(
                f"  the start-up alone is {startup.empty_s / cc_s:.0%} of ccusage's time: warm can be at most"
                f" {cc_s / startup.empty_s:.1f}x faster than ccusage"
                + (f"; without it, {cc_s / net:.0f}x" if net > 0.01 else "; the rest of warm is within noise")
            )
            print(
                f"  python with typer, rich and pydantic imported is {startup.deps_s / cc_s:.0%} of ccusage's time:"
                f" a process that needs them can be at most {cc_s / startup.deps_s:.1f}x faster than ccusage"
            )

        ws_ids = {
            prov: {s["id"] for s in m["sessions"] if s["provider"] == prov and s["in_workspace"]} for prov in PROVIDERS
        }
        print("\n".join(tokens_section(corpus, cc_report, ours_all, cold, ws_ids)))
        print("\n".join(extraction_section(corpus, ours_all, cold)))
        print("\n".join(consistency_lines(corpus, cold, warm, ours_all)))
        print("\n".join(cli_lines))
        print()
        for line in insight_lines("What ours extracted (workspace, cold)", cold):
            print(line)
        for line in insight_lines("What ours extracted (repo=/)", ours_all):
            print(line)
        for label, run in (("cold", cold), ("warm", warm), ("repo=/", ours_all), ("2S", big)):
            if run is not None and run.result.get("stderr"):
                print(f"\nanalyzer stderr ({label}):\n{run.result['stderr'][-3000:]}")

        figures.update(
            {
                "corpus": {"bytes": corpus.nbytes(), "files": corpus.nfiles(), "lines": m["lines"]},
                "ccusage": {
                    "version": version,
                    "startup_s": start_s,
                    "seconds": {p: cc_best.procs[p].seconds for p in PROVIDERS},
                    "cpu_s": {p: cc_best.procs[p].cpu_s for p in PROVIDERS},
                    "peak_kb": cc_peak_kb,
                    "big_seconds": big_cc.seconds if big_cc else None,
                    "mbps": cc_row.mbps,
                },
                "ours": {
                    "cold": cold.result,
                    "warm": warm.result,
                    "all": ours_all.result,
                    "big": big.result if big else None,
                    "cold_peak_kb": cold.peak_kb,
                    "big_peak_kb": big.peak_kb if big else None,
                },
                "rounds": {
                    "ccusage_s": [r.seconds for r in cc_rounds],
                    "cold_s": [o.seconds for o in colds],
                    "warm_s": [o.seconds for o in warms],
                },
                "cli": {
                    "command": [*CLI, str(config)] if config else None,
                    "startup": (
                        {
                            "python_s": startup.python_s,
                            "deps_s": startup.deps_s,
                            "import_s": startup.import_s,
                            "empty_s": startup.empty_s,
                        }
                        if startup
                        else None
                    ),
                    "cold_extra_thread_s": [o.seconds for o in threaded],
                    "cold_extra_thread_cpu_s": [o.cpu_s for o in threaded],
                    "cold_s": [c.seconds for c in cli_colds],
                    "warm_s": [c.seconds for c in cli_warms],
                    "cold_cpu_s": cli_cold.cpu_s if cli_cold else None,
                    "peak_kb": max((c.peak_kb for c in cli_colds), default=None),
                    "ratios": cli_ratios,
                },
                "load": [load0, load1],
                "round_ratios": {"throughput": round_tp, "warm": round_warm},
                "ratios": {
                    "throughput": throughput,
                    "throughput_net": throughput_net,
                    "warm": warm_ratio,
                    "flat": flat,
                },
            }
        )
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        return 1 if args.check and not ok else 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
