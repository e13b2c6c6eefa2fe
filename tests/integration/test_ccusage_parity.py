"""Token totals per session equal what ccusage 20.0.24 reports for the same files: on transcripts and
rollouts written by the real `claude` and `codex` CLIs, and on a generated corpus shaped like them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from benchmarks.analyze.generate import generate
from orchestration.config import Sessions
from orchestration.models import Insights
from orchestration.sessions import analyze_sessions
from tests.fixtures.ccusage import ccusage_sessions
from tests.helpers import ROOT

pytestmark = pytest.mark.integration
CAPTURED = ROOT / "tests" / "fixtures" / "sessions"


def ours(claude_dir: Path, codex_dir: Path, now: datetime | None = None) -> Insights:
    """Every session counts (repo "/"), like ccusage, which reports all of them."""
    cfg = Sessions(claude_dir=str(claude_dir), codex_dir=str(codex_dir), since_days=36500, max_sessions=100_000)
    return analyze_sessions("/", cfg, now=now, cache_dir=None, workers=1)


def compare(theirs: dict[str, dict[str, int]], mine: dict[str, dict[str, int]], match: str) -> None:
    """`match`: how session names line up. Claude: equal names. Codex: ccusage's name (the rollout path)
    ends with the session id ours reports."""
    if match == "equal":
        assert mine == theirs
        return
    paired = {}
    for name, tokens in theirs.items():
        [sid] = [s for s in mine if name.endswith(s)]
        paired[sid] = tokens
    assert mine == paired


def as_dicts(ins: Insights, provider: str) -> dict[str, dict[str, int]]:
    return {sid: t.model_dump() for sid, t in ins.providers[provider].by_session.items()}


def test_real_cli_files_match_ccusage() -> None:
    ins = ours(CAPTURED / "claude", CAPTURED / "codex")
    claude = ccusage_sessions("claude", CAPTURED / "claude")
    codex = ccusage_sessions("codex", CAPTURED / "codex")
    assert len(claude) == 3 and len(codex) == 2
    compare(claude, as_dicts(ins, "claude-code"), "equal")
    compare(codex, as_dicts(ins, "codex"), "suffix")
    # And the provider totals are the sums of those sessions.
    for provider, theirs in (("claude-code", claude), ("codex", codex)):
        total = ins.providers[provider].tokens.model_dump()
        assert total == {k: sum(t[k] for t in theirs.values()) for k in total}


@pytest.mark.timeout(120)
def test_generated_corpus_matches_ccusage(tmp_path: Path) -> None:
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    generate(tmp_path, size_mb=12, seed=7, now=now)
    ins = ours(tmp_path / "claude", tmp_path / "codex", now=now)
    claude = ccusage_sessions("claude", tmp_path / "claude")
    codex = ccusage_sessions("codex", tmp_path / "codex")
    assert len(claude) >= 5 and len(codex) >= 3
    compare(claude, as_dicts(ins, "claude-code"), "equal")
    compare(codex, as_dicts(ins, "codex"), "suffix")
