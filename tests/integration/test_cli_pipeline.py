"""`validate`, `plan` and `schema` for pipelines, as a user runs them: exit codes, messages, nothing run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import orchestrate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

STEPS: list[dict[str, Any]] = [
    {"op": "session.analyze", "as": "insights"},
    {"op": "orchestrate.decide", "as": "decision"},
    {"op": "agent.execute", "as": "run"},
    {"op": "shell.run", "with": {"command": ["python3", "-m", "pytest", "-q"], "check": False}, "as": "tests"},
    {"op": "pr.create", "if": "${tests.ok}", "with": {"title": "${decision.title}"}, "as": "pr"},
    {"op": "http.notify", "with": {"url": "https://hooks.example.com/x", "json": {"ok": "${tests.ok}"}}},
]


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def config(tmp: Path, **extra: Any) -> dict[str, Any]:
    return {
        "workspace": {"repo": str(tmp / "repo")},
        "permissions": {"shell": ["python3"], "network": ["hooks.example.com"]},
        **extra,
    }


def allowed(env: dict[str, str]) -> dict[str, str]:
    return dict(env, ORCH_ALLOW="shell,network:hooks.example.com")


def test_validate_takes_a_bare_manifest_and_reports_every_error(tmp_path: Path, orch_env: dict[str, str]) -> None:
    good = write(tmp_path / "good.json", {"id": "fix-then-test", "version": "1.2.0", "pipeline": STEPS})
    bad = write(
        tmp_path / "bad.json",
        {
            "version": "1.0.0",
            "pipeline": [
                {"op": "session.analyze", "as": "insights"},
                {"op": "orchestrate.decide", "as": "decision"},
                {"op": "pr.create", "with": {"title": "${decison.title}"}},
                {"op": "shell.exec", "with": {"command": ["true"]}},
            ],
        },
    )
    proc = orchestrate(["validate", str(good), str(bad)], orch_env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"ok {good} (manifest fix-then-test 1.2.0, 6 steps)" in proc.stdout
    lines = [line for line in proc.stdout.splitlines() if str(bad) in line]
    assert any("pipeline[2].with.title (pr.create): ${decison.title}" in x and "'decision'" in x for x in lines)
    assert any("pipeline[3].op (shell.exec): unknown operation" in x for x in lines)


def test_a_config_naming_a_manifest_file_is_validated_through_it(tmp_path: Path, orch_env: dict[str, str]) -> None:
    (tmp_path / "pipelines").mkdir()
    write(tmp_path / "pipelines" / "m.json", {"pipeline": STEPS})
    cfg = write(tmp_path / "c.json", config(tmp_path, pipeline="pipelines/m.json"))
    proc = orchestrate(["validate", str(cfg)], allowed(orch_env))
    assert proc.returncode == 0, proc.stdout
    # Without the host's consent for shell and that host, the same file is refused, naming what is missing.
    proc = orchestrate(["validate", str(cfg)], orch_env)
    assert proc.returncode == 2 and 'ORCH_ALLOW lacks "shell"' in proc.stdout
    missing = write(tmp_path / "c2.json", config(tmp_path, pipeline="nowhere.json"))
    proc = orchestrate(["validate", str(missing)], allowed(orch_env))
    assert proc.returncode == 2
    assert f"pipeline: {tmp_path / 'nowhere.json'}: cannot read file" in proc.stdout


def test_plan_prints_the_compiled_steps_and_runs_nothing(tmp_path: Path, orch_env: dict[str, str]) -> None:
    cfg = write(tmp_path / "c.json", config(tmp_path, pipeline=STEPS, budget={"cycle_s": 900}))
    proc = orchestrate(["plan", str(cfg), "--json"], allowed(orch_env))
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    steps = plan["steps"]
    assert [s["op"] for s in steps] == [s["op"] for s in STEPS]
    assert steps[2]["queue"] == "agent.claude-code" and steps[2]["task"] == "orchestrate.op.agent.execute"
    assert steps[0]["queue"] == "orchestrate"
    assert steps[3]["permissions"] == ["shell: python3"] and steps[5]["permissions"] == ["network: hooks.example.com"]
    assert steps[4]["if"] == "${tests.ok}" and steps[4]["references"] == ["${decision.title}"]
    assert all(s["time_limit_s"] > s["soft_time_limit_s"] for s in steps)
    assert steps[2]["soft_time_limit_s"] >= 900  # the agent's step gets the budget; the runner stops it first
    human = orchestrate(["plan", str(cfg)], allowed(orch_env))
    assert human.returncode == 0 and "shell.run → tests" in human.stdout and "if ${tests.ok}" in human.stdout
    assert not (Path(orch_env["ORCH_STATE_DIR"]) / "worktrees").exists()  # nothing ran
    bad = write(tmp_path / "bad.json", config(tmp_path, pipeline=[{"op": "nope.op"}]))
    proc = orchestrate(["plan", str(bad)], allowed(orch_env))
    assert proc.returncode == 2 and "pipeline[0].op (nope.op): unknown operation" in proc.stderr


def test_schema_prints_json_schemas_for_editors(orch_env: dict[str, str]) -> None:
    manifest = json.loads(orchestrate(["schema", "manifest"], orch_env).stdout)
    variants = manifest["$defs"]["Step"]["oneOf"]
    assert {v["properties"]["op"]["const"] for v in variants} >= {"shell.run", "http.notify", "pr.create"}
    shell = next(v for v in variants if v["properties"]["op"]["const"] == "shell.run")
    args = manifest["$defs"][shell["properties"]["with"]["$ref"].rsplit("/", 1)[1]]
    assert "command" in args["required"] and args["additionalProperties"] is False
    assert "$schema" in manifest["properties"]  # a manifest may name its schema
    config_schema = json.loads(orchestrate(["schema"], orch_env).stdout)
    assert "workspace" in config_schema["required"] and "pipeline" in config_schema["properties"]
    proc = orchestrate(["schema", "nonsense"], orch_env)
    assert proc.returncode == 2 and "config or manifest" in proc.stderr


def test_an_invalid_pipeline_runs_nothing_and_records_no_cycle(tmp_path: Path, orch_env: dict[str, str]) -> None:
    """Every validation error stops `run` before anything starts: exit 2, no cycle record, no worktree, no
    agent (the agent command would leave a marker file if it ever ran)."""
    marker = tmp_path / "agent-ran"
    agent = tmp_path / "agent.sh"
    agent.write_text(f"#!/bin/sh\ntouch {marker}\n")
    agent.chmod(0o755)
    bad_steps = [
        {"op": "session.analyze", "as": "insights"},
        {"op": "orchestrate.decide", "as": "decision"},
        {"op": "agent.execute", "as": "run", "with": {"prompt": "${decision.titel}"}},
        {"op": "shell.run", "with": {"command": ["python3"], "colour": 1}},
        {"op": "http.notify", "with": {"url": "https://elsewhere.example.com/x", "json": {"a": "${env.SECRET}"}}},
    ]
    cfg = write(
        tmp_path / "c.json",
        config(tmp_path, pipeline=bad_steps, agents={"claude-code": {"command": str(agent)}}),
    )
    state = Path(orch_env["ORCH_STATE_DIR"])
    for args in (["run", "--local", str(cfg)], ["run", str(cfg)], ["plan", str(cfg)]):
        proc = orchestrate(args, allowed(orch_env))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        text = proc.stderr
        assert "pipeline[2].with.prompt (agent.execute): ${decision.titel}" in text
        assert "pipeline[3].with.colour (shell.run): unknown argument" in text
        assert "pipeline[4].with.json.a (http.notify): ${env.SECRET}: SECRET is not listed in env_allow" in text
        assert "pipeline[4].with.url (http.notify): needs 'elsewhere.example.com' in permissions.network" in text
    assert not marker.exists()
    assert not (state / "local").exists() and not (state / "worktrees").exists()
    status = orchestrate(["status", "--json"], orch_env)
    assert status.returncode == 0 and json.loads(status.stdout) == [], status.stdout
