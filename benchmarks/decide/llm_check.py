"""The LLM backend's plumbing on every history, against a scripted model on loopback.

The model is the test suite's scripted OpenAI-compatible server (`tests/fixtures/chat_server.py`), answering
from the request itself: it reads the JSON context the orchestrator sends, takes candidate 0 and cites that
candidate's evidence ids (`context["candidates"][0]["evidence"][*]["id"]`). Two checks per history:

* citing the candidate's own evidence, the decision is the LLM's (`source == "llm"`) and keeps the
  candidate's title;
* citing an id the context does not hold (`E999`), the decision falls back to the heuristic
  (`source == "heuristic"`) and its `fallback_reason` speaks of the evidence.

No network beyond 127.0.0.1; both servers are stopped before this returns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from benchmarks.decide.generate import NOW
from benchmarks.decide.records import History
from benchmarks.decide.run import analyze, decide, workspace_config
from tests.fixtures.chat_server import Reply, ScriptedChat

UNKNOWN_ID = "E999"


class CandidatePicker(ScriptedChat):
    """A scripted model that takes candidate 0 of whatever context it is sent, citing its evidence, or citing
    `cite` instead when given."""

    def __init__(self, cite: Sequence[str] | None = None) -> None:
        super().__init__([Reply(content="{}")])
        self.cite = list(cite) if cite is not None else None

    def __enter__(self) -> CandidatePicker:
        super().__enter__()
        return self

    def _next(self, body: dict[str, Any]) -> Reply:
        super()._next(body)  # records the request
        return Reply(content=answer(body, self.cite))


def request_context(body: dict[str, Any]) -> dict[str, Any]:
    """The JSON context of a chat request the orchestrator sent (the user message after the system prompt)."""
    messages = body.get("messages") or []
    if len(messages) < 2 or not isinstance(messages[1].get("content"), str):
        return {}
    try:
        context = json.loads(messages[1]["content"])
    except json.JSONDecodeError:
        return {}
    return context if isinstance(context, dict) else {}


def evidence_ids(candidate: dict[str, Any]) -> list[str] | None:
    """The ids of a candidate's evidence; None when the candidate carries no `evidence` at all."""
    evidence = candidate.get("evidence")
    if not isinstance(evidence, list):
        return None
    return [str(e["id"]) for e in evidence if isinstance(e, dict) and "id" in e]


def answer(body: dict[str, Any], cite: list[str] | None) -> str:
    context = request_context(body)
    candidates = context.get("candidates") or []
    if not candidates:
        return "{}"
    first = candidates[0]
    return json.dumps(
        {
            "candidate": 0,
            "title": first["title"],
            "task": first["task"],
            "agent": (context.get("agents") or ["claude-code"])[0],
            "rationale": f"Candidate 0: {first.get('why', '')}",
            "confidence": 0.9,
            "estimated_minutes": max(1, min(30, int(context.get("budget_minutes") or 30))),
            "evidence": (evidence_ids(first) or []) if cite is None else cite,
        }
    )


class LLMCheck(BaseModel):
    name: str
    evidence: list[str] | None  # candidate 0's evidence ids in the context (None: the context has no evidence)
    source: str | None  # citing them
    fallback_reason_own: str | None
    title_kept: bool
    unknown_source: str | None  # citing E999
    unknown_reason: str | None
    ok: bool
    why: str


def check(h: History, own: CandidatePicker, unknown: CandidatePicker) -> LLMCheck:
    insights = analyze(h, workspace_config(h), NOW)
    sent = len(own.requests)
    first = decide(h, workspace_config(h, "llm", own.base_url), insights, NOW).decision
    context = request_context(own.requests[sent]) if len(own.requests) > sent else {}
    candidates = context.get("candidates") or [{}]
    evidence = evidence_ids(candidates[0])
    second = decide(h, workspace_config(h, "llm", unknown.base_url), insights, NOW).decision
    problems: list[str] = []
    if evidence is None:
        problems.append("the context's candidates carry no `evidence`")
    if first is None or first.source != "llm":
        why = first.fallback_reason if first is not None else "no decision"
        problems.append(f"citing the candidate's own evidence fell back ({why})")
    title_kept = first is not None and first.title == str(candidates[0].get("title", "")).strip()[:72]
    if first is not None and first.source == "llm" and not title_kept:
        problems.append("the decision lost the candidate's title")
    reason = second.fallback_reason if second is not None else None
    if second is None or second.source != "heuristic":
        problems.append(f"citing {UNKNOWN_ID} was accepted")
    elif "evidence" not in (reason or "").lower() and UNKNOWN_ID not in (reason or ""):
        problems.append(f"the fallback reason does not speak of the evidence: {reason!r}")
    return LLMCheck(
        name=h.name,
        evidence=evidence,
        source=first.source if first else None,
        fallback_reason_own=first.fallback_reason if first else None,
        title_kept=title_kept,
        unknown_source=second.source if second else None,
        unknown_reason=reason,
        ok=not problems,
        why="; ".join(problems) or f"llm with {len(evidence or [])} evidence ids; {UNKNOWN_ID} falls back",
    )


def check_all(histories: Sequence[History]) -> list[LLMCheck]:
    with CandidatePicker() as own, CandidatePicker([UNKNOWN_ID]) as unknown:
        return [check(h, own, unknown) for h in histories]


def describe(checks: Sequence[LLMCheck]) -> str:
    width = max([len("history"), *(len(c.name) for c in checks)])
    lines = [f"LLM backend, scripted model on loopback: {sum(c.ok for c in checks)}/{len(checks)} histories pass"]
    lines += [f"  {c.name:<{width}}  {'ok  ' if c.ok else 'FAIL'}  {c.why}" for c in checks]
    return "\n".join(lines)
