"""The LLM decider against a real local HTTP server speaking the chat completions API, scripted to answer
well, slowly, with HTTP 500, invalid JSON, the wrong shape and low confidence; each ends in a valid decision
with the right `source` and `fallback_reason`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from orchestration.config import parse_config
from orchestration.decide.orchestrator import make_decision
from orchestration.models import Insights, TaskRecord
from tests.fixtures.chat_server import Reply, ScriptedChat, choice_json
from tests.helpers import make_repo

pytestmark = pytest.mark.integration


def config(base_url: str, repo: Path, **decision: Any) -> Any:
    return parse_config(
        {
            "workspace": {"repo": str(repo)},
            "goals": ["Harden the upload retry", "Document the CLI"],
            "agents": {"allow": ["claude-code"]},
            "decision": {
                "backend": "llm",
                "llm": {"base_url": base_url, "model": "scripted", "timeout_s": 2},
                **decision,
            },
        }
    )


def decide(base_url: str, repo: Path, **kw: Any) -> Any:
    insights = Insights(failures={"pytest": 3}, goals=["make uploads reliable"])
    return make_decision(insights=insights, cfg=config(base_url, repo, **kw), history=[], backlog=[], repo=repo)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    work, _bare = make_repo(tmp_path)
    return work


def test_good_answer_is_used(repo: Path) -> None:
    with ScriptedChat([Reply(choice_json())]) as srv:
        outcome = decide(srv.base_url, repo)
    d = outcome.decision
    assert d.source == "llm" and d.fallback_reason is None
    assert d.title == "Harden the upload retry" and d.confidence == 0.82 and d.agent == "claude-code"
    assert "Run the project's tests" in d.task  # the house rules are appended to the LLM's brief
    assert d.estimated_s == 20 * 60
    # The prompt carried the insights, the repository state, the candidates and the budget.
    sent = json.loads(srv.requests[0]["messages"][1]["content"])
    assert sent["insights"]["failures"] == {"pytest": 3}
    assert sent["repository"]["branch"] == "main" and sent["repository"]["recent_commits"]
    assert sent["candidates"][0]["title"] == "Harden the upload retry"
    assert srv.requests[0]["response_format"] == {"type": "json_object"}


def test_candidate_keeps_its_op_hash(repo: Path) -> None:
    with ScriptedChat([Reply(choice_json(candidate=1, title="Write CLI docs"))]) as srv:
        d = decide(srv.base_url, repo).decision
    from orchestration.decide.heuristic import op_hash

    assert d.op_hash == op_hash("Document the CLI")


def test_slow_server_times_out_and_falls_back(repo: Path) -> None:
    with ScriptedChat([Reply(choice_json(), delay_s=5)]) as srv:
        t0 = time.monotonic()
        d = decide(srv.base_url, repo).decision
        elapsed = time.monotonic() - t0
    assert d.source == "heuristic" and "timed out" in (d.fallback_reason or "")
    assert len(srv.requests) == 2  # one retry
    assert elapsed < 2 * 2 + 3


def test_http_500_then_success_uses_the_retry(repo: Path) -> None:
    with ScriptedChat([Reply(status=500), Reply(choice_json())]) as srv:
        d = decide(srv.base_url, repo).decision
    assert d.source == "llm" and len(srv.requests) == 2


def test_http_500_twice_falls_back(repo: Path) -> None:
    with ScriptedChat([Reply(status=500)]) as srv:
        d = decide(srv.base_url, repo).decision
    assert d.source == "heuristic" and d.fallback_reason == "llm answered HTTP 500"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("this is not json {", "llm answer is not valid JSON"),
        ('["a", "list"]', "llm answer is not a JSON object"),
        (json.dumps({"title": "x"}), "llm answer has the wrong shape"),
        (choice_json(confidence=1.7), "llm answer has the wrong shape (confidence)"),
        ("", "llm answer is empty"),
    ],
)
def test_bad_answers_fall_back(repo: Path, content: str, reason: str) -> None:
    with ScriptedChat([Reply(content)]) as srv:
        d = decide(srv.base_url, repo).decision
    assert d.source == "heuristic"
    assert (d.fallback_reason or "").startswith(reason)
    assert len(srv.requests) == 2
    assert "not usable" in srv.requests[1]["messages"][-1]["content"]  # the retry says what was wrong


def test_fenced_json_is_accepted(repo: Path) -> None:
    with ScriptedChat([Reply("Here you go:\n```json\n" + choice_json() + "\n```")]) as srv:
        assert decide(srv.base_url, repo).decision.source == "llm"


def test_low_confidence_falls_back(repo: Path) -> None:
    with ScriptedChat([Reply(choice_json(confidence=0.2))]) as srv:
        d = decide(srv.base_url, repo, min_confidence=0.5).decision
    assert d.source == "heuristic"
    assert d.fallback_reason == "llm confidence 0.20 is below min_confidence 0.50"


def test_unknown_agent_is_replaced_and_repeat_is_refused(repo: Path) -> None:
    with ScriptedChat([Reply(choice_json(agent="gpt-agent", candidate=None, title="Something new"))]) as srv:
        assert decide(srv.base_url, repo).decision.agent == "claude-code"
    from orchestration.decide.heuristic import op_hash

    history = [TaskRecord(op_hash=op_hash("Something new"), status="succeeded", at=time.time())]
    with ScriptedChat([Reply(choice_json(candidate=None, title="Something new"))]) as srv:
        cfg = config(srv.base_url, repo)
        d = make_decision(insights=Insights(), cfg=cfg, history=history, backlog=[], repo=repo).decision
    assert d.source == "heuristic" and d.fallback_reason == "llm chose a task that was done recently"


def test_unreachable_server_in_auto_mode(repo: Path) -> None:
    from tests.helpers import free_port

    d = decide(f"http://127.0.0.1:{free_port()}/v1", repo, backend="auto").decision
    assert d.source == "heuristic" and (d.fallback_reason or "").startswith("llm unreachable")


def test_backlog_task_is_not_second_guessed(repo: Path) -> None:
    with ScriptedChat([Reply(choice_json())]) as srv:
        outcome = make_decision(
            insights=Insights(), cfg=config(srv.base_url, repo), history=[], backlog=["fix the flaky login test"]
        )
    assert outcome.took_backlog and outcome.decision.title == "fix the flaky login test"
    assert srv.requests == []


def test_the_llm_sees_each_candidate_s_evidence_and_the_decision_keeps_what_it_cites(repo: Path) -> None:
    with ScriptedChat([Reply(choice_json(candidate=1, title="Write CLI docs", evidence=["E2", "E1", "E2"]))]) as srv:
        d = decide(srv.base_url, repo).decision
    assert d.source == "llm" and d.fallback_reason is None
    assert [(e.id, e.kind, e.text) for e in d.evidence] == [
        ("E2", "goal", "Document the CLI"),
        ("E1", "goal", "Harden the upload retry"),
    ]
    sent = json.loads(srv.requests[0]["messages"][1]["content"])
    assert sent["candidates"][0]["evidence"] == [{"id": "E1", "kind": "goal", "text": "Harden the upload retry"}]
    ids = [e["id"] for c in sent["candidates"] for e in c["evidence"]]
    assert ids == [f"E{i}" for i in range(1, len(ids) + 1)]  # numbered once across all candidates


@pytest.mark.parametrize("cited", [["E999"], ["E1", "made-up"], []])
def test_an_answer_citing_evidence_that_does_not_exist_falls_back(repo: Path, cited: list[str]) -> None:
    with ScriptedChat([Reply(choice_json(evidence=cited))]) as srv:
        d = decide(srv.base_url, repo).decision
    assert d.source == "heuristic"
    if cited:  # a well-formed answer that cites nothing real: no retry, the heuristic's decision
        assert d.fallback_reason == f"llm cited evidence that does not exist: {cited[-1]!r}"
        assert len(srv.requests) == 1
    else:  # citing nothing at all is the wrong shape (the retry says so)
        assert d.fallback_reason == "llm answer has the wrong shape (evidence)"
    assert d.title == "Harden the upload retry" and [e.kind for e in d.evidence] == ["goal"]
