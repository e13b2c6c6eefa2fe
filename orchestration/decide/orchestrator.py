"""One decision per cycle: backlog first, then the LLM (when configured) over the heuristic's candidates,
with the heuristic as the fallback on any LLM failure; never a task done recently; the agent picked by
the config and by how each agent has fared here before."""

from __future__ import annotations

import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestration.agents.registry import AGENTS
from orchestration.config import WorkspaceConfig
from orchestration.decide import llm
from orchestration.decide.heuristic import Candidate, blocked_reasons, candidates, choose, op_hash, task_budget_s
from orchestration.decide.repo_state import repo_state
from orchestration.issues import PassedOver, SourceReport, TrackedIssue, read_issues
from orchestration.models import Decision, Insights, TaskRecord

# Agents this version has a runner for: the agent registry.
RUNNABLE_AGENTS: Container[str] = AGENTS
# Another agent replaces the preferred one only with this much better a record, over enough runs.
SWITCH_MARGIN = 0.25
SWITCH_MIN_RUNS = 3


# The sources of candidates, in the order `orchestrate decide --json` lists them.
SOURCES = ("backlog", "issues", "goals", "sessions", "chores")


@dataclass
class Outcome:
    decision: Decision | None
    runners_up: list[Candidate] = field(default_factory=list)
    took_backlog: bool = False
    reason: str | None = None  # why there is no decision: no_agent_available, no_task
    # Per source: the candidates it gave, what it passed over and why, and the error that emptied it.
    sources: dict[str, SourceReport] = field(default_factory=dict)


def _sources(cands: list[Candidate], blocked: dict[str, str], issues: SourceReport | None) -> dict[str, SourceReport]:
    out = {name: SourceReport() for name in SOURCES}
    if issues is not None:
        out["issues"] = issues.model_copy(deep=True)
    for c in cands:
        report = out.setdefault(c.source, SourceReport())
        if c.op_hash in blocked:
            report.passed_over.append(PassedOver(what=c.title, reason=blocked[c.op_hash]))
        else:
            report.candidates.append(c.title)
    return out


def rank_agents(cfg: WorkspaceConfig, available: Callable[[str], bool] | None, history: list[TaskRecord]) -> list[str]:
    """Allowed agents that can run, best first: `prefer`, unless another did clearly better here."""
    order: list[str] = [cfg.agents.prefer, *[a for a in cfg.agents.allow if a != cfg.agents.prefer]]
    agents = [a for a in order if a in RUNNABLE_AGENTS and (available is None or available(a))]
    if len(agents) < 2:
        return agents
    record: dict[str, tuple[int, int]] = {}
    for entry in history:
        if entry.agent:
            ok, n = record.get(entry.agent, (0, 0))
            record[entry.agent] = (ok + (entry.status == "succeeded"), n + 1)

    def score(agent: str) -> float:
        ok, n = record.get(agent, (0, 0))
        return (ok + 1) / (n + 2)  # Laplace: an agent with no record scores 0.5

    first = agents[0]
    best = max(agents[1:], key=score)
    if record.get(best, (0, 0))[1] >= SWITCH_MIN_RUNS and score(best) >= score(first) + SWITCH_MARGIN:
        return [best, *[a for a in agents if a != best]]
    return agents


def make_decision(
    *,
    insights: Insights | None,
    cfg: WorkspaceConfig,
    history: list[TaskRecord],
    backlog: list[str],
    available: Callable[[str], bool] | None = None,
    repo: Path | None = None,
    deadline: float | None = None,
    now: float | None = None,
) -> Outcome:
    agents = rank_agents(cfg, available, history)
    if not agents:
        return Outcome(None, reason="no_agent_available")
    issues: list[TrackedIssue] = []
    issue_report: SourceReport | None = None
    if cfg.issues.enabled:
        issues, issue_report = read_issues(cfg, repo, deadline, now=now)
    cands = candidates(insights or Insights(), cfg, backlog[0] if backlog else None, issues)
    blocked = blocked_reasons(history, cfg.decision.avoid_repeat_days, now)
    sources = _sources(cands, blocked, issue_report)
    heuristic, runners_up = choose(cands, cfg, history, agents[0], now, blocked)
    if heuristic is None:
        return Outcome(None, reason="no_task", sources=sources)
    errors = {name: r.error for name, r in sources.items() if r.error}
    heuristic.source_errors = errors
    took_backlog = bool(backlog) and cands[0].backlog and heuristic.op_hash == cands[0].op_hash
    if took_backlog or cfg.decision.backend == "heuristic":
        return Outcome(heuristic, runners_up, took_backlog, sources=sources)
    open_cands = [c for c in cands if c.op_hash not in blocked][:8]
    context = _context(insights, cfg, history, open_cands, agents, repo)
    try:
        choice, _attempt = llm.ask(cfg.decision.llm, context, deadline)
        decision = _from_choice(choice, open_cands, agents, cfg, set(blocked))
    except llm.LLMFailure as exc:
        heuristic.fallback_reason = str(exc)
        return Outcome(heuristic, runners_up, sources=sources)
    others = [c for c in open_cands if c.op_hash != decision.op_hash][:3]
    decision.source_errors = errors
    return Outcome(decision, others, sources=sources)


def _from_choice(
    choice: llm.LLMChoice, cands: list[Candidate], agents: list[str], cfg: WorkspaceConfig, blocked: set[str]
) -> Decision:
    if choice.confidence < cfg.decision.min_confidence:
        raise llm.LLMFailure(
            f"llm confidence {choice.confidence:.2f} is below min_confidence {cfg.decision.min_confidence:.2f}"
        )
    known = {e.id: e for c in cands for e in c.evidence}
    unknown = [ref for ref in choice.evidence if ref.strip() not in known]
    if unknown:
        shown = ", ".join(repr(ref[:20]) for ref in unknown[:5])
        raise llm.LLMFailure(f"llm cited evidence that does not exist: {shown}")
    cited = list({ref.strip(): known[ref.strip()] for ref in choice.evidence}.values())
    picked = cands[choice.candidate] if choice.candidate is not None and 0 <= choice.candidate < len(cands) else None
    # A candidate keeps its hash however the LLM words it; a new task is keyed on its title.
    hash_ = picked.op_hash if picked else op_hash(choice.title)
    if hash_ in blocked:
        raise llm.LLMFailure("llm chose a task that was done recently")
    budget = task_budget_s(cfg)
    task = choice.task
    if picked is not None and picked.issue is not None:  # the issue itself goes with the brief, quoted
        task = "\n\n".join([task.strip(), *picked.details])
    return Decision(
        task=_with_rules(task, cfg),
        title=choice.title.strip()[:72],
        agent=choice.agent if choice.agent in agents else agents[0],
        rationale=choice.rationale.strip(),
        confidence=round(choice.confidence, 2),
        source="llm",
        op_hash=hash_,
        priority=int(picked.score) if picked else 0,
        estimated_s=max(60, min(budget, choice.estimated_minutes * 60)),
        evidence=cited,
        issue=picked.issue if picked else None,
    )


def _with_rules(task: str, cfg: WorkspaceConfig) -> str:
    """The house rules go with every brief, whoever wrote it."""
    denied = [*cfg.focus.exclude, *cfg.permissions.deny_write]
    rules = ["", "Rules:", "- Run the project's tests; they must pass. Commit your work when done."]
    if denied:
        rules.append("- Do not modify: " + ", ".join(denied) + ".")
    if cfg.focus.include:
        rules.append("- Work inside: " + ", ".join(cfg.focus.include) + ".")
    return task.strip() + "\n" + "\n".join(rules)


def _context(
    insights: Insights | None,
    cfg: WorkspaceConfig,
    history: list[TaskRecord],
    cands: list[Candidate],
    agents: list[str],
    repo: Path | None,
) -> dict[str, Any]:
    ins = insights or Insights()
    return {
        "repository": repo_state(repo).model_dump(exclude_none=True) if repo is not None and repo.exists() else {},
        "insights": {
            "sessions": ins.sessions,
            "turns": ins.turns,
            "recent_requests": ins.goals[:8],
            "top_files": dict(list(ins.files.items())[:12]),
            "failures": dict(list(ins.failures.items())[:8]),
            "unfinished": [u.model_dump(exclude_none=True) for u in ins.unfinished],
            "interruptions": ins.interruptions,
        },
        "goals": cfg.goals,
        "focus": cfg.focus.model_dump(),
        "recent_tasks": [
            e.model_dump(include={"title", "status", "agent"}) for e in sorted(history, key=lambda e: -e.at)[:15]
        ],
        "candidates": [
            {
                "index": i,
                "title": c.title,
                "task": c.objective,
                "why": c.rationale,
                "evidence": [e.model_dump(mode="json", exclude_defaults=True) for e in c.evidence],
            }
            for i, c in enumerate(cands)
        ],
        "agents": agents,
        "budget_minutes": max(1, task_budget_s(cfg) // 60),
        "now": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
