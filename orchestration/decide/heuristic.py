"""The heuristic decider.

Rules, highest score first (documented in the README):
  100  a task from the human backlog (`orchestrate enqueue`), first in line;
   80  each of the config's `goals`, in the order written (70-80);
   60+ a tool or command that failed repeatedly in recent sessions (more failures, higher; below 70);
   55  a recent session that ended on a failing tool or command (abandoned mid-error), newest first;
   52  a recent request the person interrupted and did not take up again;
   50  the most recent real request the user made to an agent here;
   40+ a file agents read or edited again and again recently, inside `focus`: strengthen its tests;
   10  standing chores (test coverage, warnings) so a cycle never idles for lack of ideas.
A candidate whose `op_hash` succeeded within `avoid_repeat_days`, or failed twice there, is passed over.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field

import pathspec

from orchestration.config import WorkspaceConfig
from orchestration.models import Decision, Insights, TaskRecord


@dataclass
class Candidate:
    objective: str
    title: str
    score: float
    rationale: str
    files: list[str] = field(default_factory=list)
    backlog: bool = False

    @property
    def op_hash(self) -> str:
        return op_hash(self.objective)


# Files whose "tests" make no sense: docs, data, config, lock files, images.
NOT_CODE = (
    ".md",
    ".rst",
    ".txt",
    ".json",
    ".yaml",
    ".yml",
    ".toml",
    ".ini",
    ".cfg",
    ".lock",
    ".csv",
    ".svg",
    ".png",
    ".jpg",
    ".gif",
    ".pdf",
    ".env",
    ".gitignore",
)


def op_hash(objective: str) -> str:
    norm = re.sub(r"[^a-z0-9]+", " ", objective.lower()).strip()
    return hashlib.sha256(norm.encode()).hexdigest()[:16]


def _in_focus(path: str, cfg: WorkspaceConfig) -> bool:
    if cfg.focus.include and not pathspec.GitIgnoreSpec.from_lines(cfg.focus.include).match_file(path):
        return False
    return not (cfg.focus.exclude and pathspec.GitIgnoreSpec.from_lines(cfg.focus.exclude).match_file(path))


def candidates(insights: Insights | None, cfg: WorkspaceConfig, backlog: str | None = None) -> list[Candidate]:
    out: list[Candidate] = []
    if backlog:
        out.append(
            Candidate(backlog, _title(backlog), 100, "queued by a person with `orchestrate enqueue`", backlog=True)
        )
    for i, goal in enumerate(cfg.goals):
        out.append(Candidate(goal, _title(goal), 80 - min(i, 999) * 0.01, "a goal stated in the workspace config"))
    ins = insights or Insights()
    for name, count in sorted(ins.failures.items(), key=lambda kv: -kv[1])[:3]:
        if count >= 2:
            out.append(
                Candidate(
                    f"Find out why `{name}` keeps failing in this repository and fix the cause",
                    f"Fix repeated failures of {name}",
                    60 + min(count, 9),
                    f"`{name}` failed {count} times in recent agent sessions",
                )
            )
    for i, u in enumerate(ins.unfinished[:3]):
        if not u.last_prompt:
            continue
        if u.reason == "error":
            out.append(
                Candidate(
                    f"A recent agent session stopped while `{u.failure}` was failing. Finish its work: {u.last_prompt}",
                    _title(f"Finish: {u.last_prompt}"),
                    55 - i * 0.1,
                    f"a session on {(u.at or '')[:10]} ended on a failing `{u.failure}`",
                )
            )
        else:
            out.append(
                Candidate(
                    f"Take up this request, which was interrupted before it was done: {u.last_prompt}",
                    _title(f"Finish: {u.last_prompt}"),
                    52 - i * 0.1,
                    f"a session on {(u.at or '')[:10]} was interrupted and not taken up again",
                )
            )
    unfinished_prompts = {u.last_prompt.strip() for u in ins.unfinished[:3]}
    if ins.goals and ins.goals[0].strip() not in unfinished_prompts:
        last = ins.goals[0]
        out.append(
            Candidate(
                f"Finish this recent request if it is not done yet, or improve on it: {last}",
                _title(f"Follow up: {last}"),
                50,
                "the most recent request a person made to an agent here",
            )
        )
    hot = [
        (p, n)
        for p, n in sorted(ins.files.items(), key=lambda kv: -kv[1])
        if _in_focus(p, cfg) and not p.lower().endswith(NOT_CODE) and p != "."
    ]
    for path, count in hot[:3]:
        out.append(
            Candidate(
                f"Strengthen the tests covering `{path}`: add tests for behaviour that is not covered yet",
                f"Tests for {path}",
                40 + min(count, 9),
                f"`{path}` was read or edited {count} times in recent agent sessions",
                files=[path],
            )
        )
    out.append(
        Candidate(
            "Raise test coverage where it is lowest: find a module with weak tests and add meaningful ones",
            "Raise test coverage",
            10,
            "standing chore: more tested code is safer to change",
        )
    )
    out.append(
        Candidate(
            "Fix compiler, linter or test-runner warnings reported by the project's own tooling",
            "Fix warnings",
            9,
            "standing chore: a quiet build makes real problems visible",
        )
    )
    out.sort(key=lambda c: -c.score)
    return out


def _title(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else "task"
    return first if len(first) <= 72 else first[:71].rstrip() + "…"


# A task is sized for this share of the cycle budget: the rest covers analysis, start-up, commit and the PR.
TASK_SHARE_OF_BUDGET = 0.8


def task_budget_s(cfg: WorkspaceConfig) -> int:
    """The seconds a task should fit in."""
    return max(1, int(cfg.budget.cycle_s * TASK_SHARE_OF_BUDGET))


def blocked_hashes(history: list[TaskRecord], avoid_repeat_days: int, now: float | None = None) -> set[str]:
    """Hashes done (succeeded) in the window, or failed twice there."""
    since = (now or time.time()) - avoid_repeat_days * 86400
    failures: dict[str, int] = {}
    blocked: set[str] = set()
    for entry in history:
        if entry.at < since:
            continue
        h = entry.op_hash
        if entry.status in ("succeeded", "running", "queued"):
            blocked.add(h)
        elif entry.status in ("failed", "timed_out", "cancelled"):
            failures[h] = failures.get(h, 0) + 1
            if failures[h] >= 2:
                blocked.add(h)
    return blocked


def _duration(seconds: int) -> str:
    return f"{seconds} seconds" if seconds < 120 else f"{seconds // 60} minutes"


def brief(c: Candidate, cfg: WorkspaceConfig, seconds: int) -> str:
    """The prompt the agent gets: bounded, concrete, with acceptance criteria."""
    lines = [c.objective.strip(), "", f"Why: {c.rationale}."]
    if c.files:
        lines.append("Files in focus: " + ", ".join(f"`{f}`" for f in c.files) + ".")
    if cfg.focus.include:
        lines.append("Work inside: " + ", ".join(cfg.focus.include) + ".")
    denied = list(cfg.focus.exclude) + list(cfg.permissions.deny_write)
    if denied:
        lines.append("Do not modify: " + ", ".join(denied) + ".")
    lines += [
        "",
        "Acceptance criteria:",
        "- The change is small, focused on this one task, and complete (no TODO placeholders).",
        "- The project's existing tests still pass; run them, and add tests for new behaviour.",
        "- Commit your work with a clear message when you are done.",
        "",
        f"You have about {_duration(seconds)}. If the task is larger, do a coherent first part and say what is left.",
    ]
    return "\n".join(lines)


def choose(
    cands: list[Candidate],
    cfg: WorkspaceConfig,
    history: list[TaskRecord],
    agent: str,
    now: float | None = None,
) -> tuple[Decision | None, list[Candidate]]:
    """The best candidate not passed over by dedupe, and the runners-up."""
    blocked = blocked_hashes(history, cfg.decision.avoid_repeat_days, now)
    open_cands = [c for c in cands if c.op_hash not in blocked]
    if not open_cands:
        return None, []
    best = open_cands[0]
    seconds = task_budget_s(cfg)
    decision = Decision(
        task=brief(best, cfg, seconds),
        title=best.title,
        agent=agent,
        rationale=best.rationale,
        confidence=round(min(1.0, 0.3 + best.score / 150), 2),
        source="heuristic",
        op_hash=best.op_hash,
        priority=int(best.score),
        estimated_s=task_budget_s(cfg),
    )
    return decision, open_cands[1:4]
