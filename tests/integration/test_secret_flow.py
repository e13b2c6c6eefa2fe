"""A token someone typed into a Claude Code prompt never leaves the worker: a whole local cycle (real git
with a bare remote, the stand-in agent, the recording fake gh) and nothing it publishes holds the token."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest

from orchestration import cycle
from orchestration.config import parse_config
from orchestration.hub import LocalHub
from orchestration.services import Services
from orchestration.state import LocalState
from tests.fixtures.fake_gh import install_fake_gh, read_calls, read_state
from tests.helpers import ROOT, make_repo, sh
from tests.unit.test_sessions import Claude

FAKE_CLAUDE = ROOT / "tests" / "fixtures" / "fake_claude.py"
pytestmark = pytest.mark.integration

ENV_SECRET = "s3cr3t-Value-9f8e7d"  # also in the worker's environment, under a secret-looking name
GH_TOKEN = "ghp_" + "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8"  # only in the prompt: caught by its shape


def leaks(text: str) -> list[str]:
    forms = {
        "env secret": ENV_SECRET,
        "env secret, base64": base64.b64encode(ENV_SECRET.encode()).decode()[:20],
        "env secret, inside a Basic header": base64.b64encode(f"me:{ENV_SECRET}".encode()).decode()[4:20],
        "gh token": GH_TOKEN,
        "gh token, its tail": GH_TOKEN[8:],
    }
    return [name for name, form in forms.items() if form in text]


@pytest.mark.timeout(120)
def test_a_token_in_a_session_prompt_reaches_nothing_published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", ENV_SECRET)
    repo, bare = make_repo(tmp_path)
    gh = install_fake_gh(tmp_path / "bin", tmp_path / "ghstate")
    monkeypatch.setenv("PATH", f"{gh.parent}:{__import__('os').environ['PATH']}")

    basic = base64.b64encode(f"me:{ENV_SECRET}".encode()).decode()
    prompt = (
        f"deploy the api with MY_SERVICE_TOKEN={ENV_SECRET} (curl -H 'Authorization: Basic {basic}'), "
        f"then push the release using {GH_TOKEN} and update app.py"
    )
    c = Claude(str(repo))
    session = tmp_path / "claude" / "projects" / "p" / f"{c.session}.jsonl"
    session.parent.mkdir(parents=True)
    session.write_bytes(orjson.dumps(c.prompt(prompt, 1)) + b"\n")

    cfg = parse_config(
        {
            "id": "demo",
            "workspace": {"repo": str(repo)},
            "sessions": {
                "claude_dir": str(tmp_path / "claude"),
                "codex_dir": str(tmp_path / "none"),
                "since_days": 3650,
            },
            "decision": {"backend": "heuristic"},
            "agents": {"allow": ["claude-code"], "claude-code": {"command": str(FAKE_CLAUDE)}},
        }
    )
    svc = Services(state=LocalState(tmp_path / "st"), hub=LocalHub(tmp_path / "ev"), state_dir=tmp_path / "sd")
    ctx = cycle.enqueue(svc, cfg)
    report = cycle.run_local(ctx, svc)

    # The cycle really ran on that prompt, and published.
    assert report.status.value == "succeeded", report
    assert report.decision is not None
    assert "deploy the api" in report.decision.task and "***" in report.decision.task, report.decision.task
    assert report.pr is not None and report.pr.status == "created", report.pr

    decision = report.decision.model_dump_json()
    events = (tmp_path / "ev" / f"{ctx.cycle_id}.events.jsonl").read_text()
    assert '"decision.made"' in events and '"pr.opened"' in events
    reports = report.model_dump_json() + orjson.dumps(report.public()).decode()
    commits = sh(["git", "--git-dir", str(bare), "log", "--all", "--format=%B"], tmp_path)
    refs = sh(["git", "--git-dir", str(bare), "for-each-ref", "--format=%(refname)"], tmp_path)
    assert "Orchestrate-Cycle: " + ctx.cycle_id in commits
    [pr] = read_state(tmp_path / "ghstate")["prs"]
    gh_calls = orjson.dumps(read_calls(tmp_path / "ghstate")).decode()
    state = "".join(p.read_text(errors="replace") for p in (tmp_path / "st").rglob("*") if p.is_file())

    for name, text in {
        "decision": decision,
        "events": events,
        "report": reports,
        "commit messages": commits,
        "branch names": refs,
        "PR title": pr["title"],
        "PR body": pr["body"],
        "gh calls": gh_calls,
        "cycle state": state,
    }.items():
        assert not leaks(text), f"{leaks(text)} in the {name}"
