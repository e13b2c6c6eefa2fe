"""The pipeline examples under examples/pipelines/: every workspace config loads and is usable on a host that
allows what it grants, every manifest checks clean on its own, and every step's arguments still validate
(and stay within the grants) once substituted, both from sample outputs and when earlier steps were skipped."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from orchestration.config import WorkspaceConfig, load_config, load_manifest, parse_config, read_json
from orchestration.deployment import config_problems
from orchestration.models import CycleContext
from orchestration.pipeline.check import check_steps
from orchestration.pipeline.expr import Condition, render
from orchestration.pipeline.manifest import is_bare_manifest, steps_of
from orchestration.pipeline.registry import OPS
from orchestration.pipeline.runtime import resolver
from orchestration.policy import HostPolicy, policy_problems
from orchestration.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"
HOST = HostPolicy.parse("shell,network:hooks.example.com")
FILES = sorted(EXAMPLES.rglob("*.json"))
MANIFESTS = [f for f in FILES if is_bare_manifest(read_json(f))]
CONFIGS = [f for f in FILES if f not in MANIFESTS]

# What each operation could return, checked against its output model below.
SAMPLES: dict[str, dict[str, Any]] = {
    "session.analyze": {"sessions": 3, "turns": 41, "cost_usd": 2.5, "repeated_failures": {"pytest": 3}},
    "orchestrate.decide": {
        "task": "Make the upload test stop failing on a slow network.",
        "title": "Fix the flaky upload test",
        "agent": "claude-code",
        "rationale": "pytest failed on it in 3 sessions this week",
        "confidence": 0.8,
        "source": "heuristic",
        "op_hash": "0f3a9c",
    },
    "agent.execute": {
        "status": "succeeded",
        "agent": "claude-code",
        "cost_usd": 1.25,
        "num_turns": 12,
        "summary": "Retry the upload once on a 503.",
        "files_changed": ["api/upload.py", "tests/test_upload.py"],
        "branch": "agent/orchestration/fix-the-flaky-upload-test",
    },
    "shell.run": {"exit_code": 0, "ok": True, "stdout": "12 passed", "stderr": "", "duration_s": 4.2},
    "git.commit": {"sha": "0" * 40, "files": ["api/upload.py"]},
    "pr.create": {
        "status": "created",
        "url": "https://github.com/acme/acme-api/pull/7",
        "number": 7,
        "branch": "agent/orchestration/fix-the-flaky-upload-test",
    },
    "http.notify": {"status_code": 200, "ok": True},
}


def _name(path: Path) -> str:
    return str(path.relative_to(EXAMPLES))


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The defaults, whatever the environment running the tests sets."""
    for name in ("ORCH_VISIBILITY_TIMEOUT_S", "ORCH_ALLOW", "ORCH_AGENT_USER"):
        monkeypatch.delenv(name, raising=False)
    return Settings()


def _context(cfg: WorkspaceConfig, outputs: dict[str, Any]) -> CycleContext:
    return CycleContext(
        cycle_id="20250101-020000-0123abcd",
        workspace=cfg.id,
        config={},
        deadline=time.time() + cfg.budget.cycle_s,
        outputs=outputs,
    )


def _outputs(cfg: WorkspaceConfig, sample: bool) -> dict[str, Any]:
    steps = steps_of(cfg)
    if not sample:
        return {str(i): None for i in range(len(steps))}  # every earlier step skipped
    return {str(i): OPS[s.op].Output.model_validate(SAMPLES[s.op]).model_dump(mode="json") for i, s in enumerate(steps)}


def _rendered(cfg: WorkspaceConfig, outputs: dict[str, Any]) -> list[tuple[bool, dict[str, Any]]]:
    """Each step's `if` and its substituted, validated arguments, as the runtime computes them."""
    steps = steps_of(cfg)
    ctx = _context(cfg, outputs)
    out = []
    for i, step in enumerate(steps):
        resolve = resolver(ctx, cfg, steps, i)
        runs = step.if_ is None or Condition.parse(step.if_).holds(resolve)
        args = OPS[step.op].Args.model_validate(render(step.with_, resolve))
        out.append((runs, args.model_dump(mode="json", by_alias=True)))
    return out


def test_the_examples_are_there() -> None:
    assert len(CONFIGS) >= 4
    assert len(MANIFESTS) >= 4
    used = set()
    for f in CONFIGS:
        pipeline = read_json(f).get("pipeline")
        if isinstance(pipeline, str):
            used.add((f.parent / pipeline).resolve())
    assert {m.resolve() for m in MANIFESTS} <= used, "every manifest is used by a config"


def test_config_ids_are_unique() -> None:
    ids = [load_config(f).id for f in CONFIGS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("path", CONFIGS, ids=_name)
def test_config_is_usable(path: Path, settings: Settings) -> None:
    cfg = load_config(path)
    assert isinstance(cfg.pipeline, list), "the manifest is put inline when the config loads"
    assert config_problems(cfg, settings) == []
    assert policy_problems(cfg, HOST) == []
    # A cycle carries its config as JSON and reads it back in every step.
    again = parse_config(cfg.model_dump(mode="json", by_alias=True))
    assert [s.dump() for s in steps_of(again)] == [s.dump() for s in steps_of(cfg)]


@pytest.mark.parametrize("path", MANIFESTS, ids=_name)
def test_manifest_checks_clean(path: Path) -> None:
    manifest = load_manifest(path)
    assert check_steps(manifest.pipeline, None) == []


@pytest.mark.parametrize("sample", [True, False], ids=["outputs", "skipped"])
@pytest.mark.parametrize("path", CONFIGS, ids=_name)
def test_arguments_hold_once_substituted(path: Path, sample: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "t0ken")
    cfg = load_config(path)
    for (_, args), step in zip(_rendered(cfg, _outputs(cfg, sample)), steps_of(cfg), strict=True):
        assert OPS[step.op].needs(args, cfg, HOST) == [], step.op
        orjson.dumps(args)


def test_tests_then_pr_proposes_only_a_passing_suite() -> None:
    cfg = load_config(EXAMPLES / "tests-then-pr.json")
    outputs = _outputs(cfg, sample=True)
    tests = next(i for i, s in enumerate(steps_of(cfg)) if s.as_ == "tests")
    assert _rendered(cfg, outputs)[-1][0] is True
    outputs[str(tests)] = {**outputs[str(tests)], "ok": False, "exit_code": 1}
    assert _rendered(cfg, outputs)[-1][0] is False
    outputs[str(tests)] = None  # the cycle ended before the suite ran
    assert _rendered(cfg, outputs)[-1][0] is False


def test_webhook_payload_keeps_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "t0ken")
    cfg = load_config(EXAMPLES / "webhook.json")
    _, args = _rendered(cfg, _outputs(cfg, sample=True))[-1]
    assert args["headers"] == {"Authorization": "Bearer t0ken"}
    body = args["json"]
    assert body["cycle_id"] == "20250101-020000-0123abcd"
    assert body["pr"]["number"] == 7
    assert body["pr"]["url"] == "https://github.com/acme/acme-api/pull/7"
    assert body["agent"]["files_changed"] == ["api/upload.py", "tests/test_upload.py"]
    assert body["agent"]["reason"] is None
    assert body["text"].endswith("(agent succeeded, PR created) https://github.com/acme/acme-api/pull/7")


def test_two_agents_review_sees_the_writer() -> None:
    cfg = load_config(EXAMPLES / "two-agents.json")
    assert cfg.agents.section("codex").model_dump()["sandbox"] == "read-only"
    outputs = _outputs(cfg, sample=True)
    outputs["3"] = {**outputs["3"], "agent": "codex", "summary": "VERDICT: approve"}
    rendered = _rendered(cfg, outputs)
    runs, review = rendered[3]
    assert runs and review["agent"] == "codex"
    assert "Retry the upload once on a 503." in review["prompt"]
    assert '["api/upload.py","tests/test_upload.py"]' in review["prompt"]
    assert rendered[4][1]["body"].endswith("VERDICT: approve")
    outputs["2"] = {**outputs["2"], "files_changed": []}
    assert _rendered(cfg, outputs)[3][0] is False, "nothing to review: the reviewer does not run"
