"""The decision benchmark's `--llm` check: the LLM backend on a few histories against the scripted model on
127.0.0.1 (it takes candidate 0 and cites its evidence; then it cites an id no context holds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.decide.generate import generate
from benchmarks.decide.llm_check import UNKNOWN_ID, check_all

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_llm_decisions_cite_evidence_and_unknown_evidence_falls_back(tmp_path: Path) -> None:
    histories = generate(tmp_path, only=["dates_abandoned", "go_ratelimit", "feature_export"])
    checks = check_all(histories)
    assert [c.name for c in checks] == [h.name for h in histories]
    for c in checks:
        assert c.ok, (c.name, c.why)
        assert c.evidence and c.source == "llm" and c.title_kept
        assert c.unknown_source == "heuristic" and UNKNOWN_ID in (c.unknown_reason or "")
