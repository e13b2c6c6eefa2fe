"""Pipeline validation before anything runs (orchestration.pipeline.check and the config layer): every problem
names `pipeline[i]`, the op in parentheses and the JSON path; all problems are reported; valid pipelines
(the default one and the spec's example) have none; manifest files named by a config load inline or fail
with a ConfigError naming the file; and validation is pure (no file, process or connection)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestration.config import ConfigError, WorkspaceConfig, load_config, load_manifest, parse_config
from orchestration.deployment import config_problems
from orchestration.pipeline.check import check_steps
from orchestration.pipeline.manifest import DEFAULT_STEPS, Step, default_steps
from orchestration.pipeline.registry import OPS
from orchestration.settings import get_settings

# The spec's example pipeline.
SPEC_STEPS: list[dict[str, Any]] = [
    {"op": "session.analyze", "as": "insights"},
    {"op": "orchestrate.decide", "as": "decision", "with": {"goals": ["${env.NIGHTLY_GOAL}"]}},
    {"op": "agent.execute", "as": "run", "with": {"agent": "${decision.agent}", "prompt": "${decision.task}"}},
    {"op": "shell.run", "as": "tests", "with": {"command": ["python3", "-m", "pytest", "-q"], "check": False}},
    {"op": "pr.create", "as": "pr", "if": "${tests.ok}"},
    {
        "op": "http.notify",
        "with": {
            "url": "https://hooks.example.com/orch",
            "json": {"cycle": "${cycle.id}", "tests_ok": "${tests.ok}", "pr": "${pr.url}"},
        },
    },
]


def config(**overrides: Any) -> WorkspaceConfig:
    data: dict[str, Any] = {
        "workspace": {"repo": "/srv/repos/acme"},
        "permissions": {"shell": True, "network": ["hooks.example.com"]},
        "env_allow": ["NIGHTLY_GOAL"],
    }
    data.update(overrides)
    return parse_config(data)


CFG = config()


def steps(*items: dict[str, Any]) -> list[Step]:
    return [Step.model_validate(item) for item in items]


def problem(problems: list[str], path: str, op: str, *words: str) -> str:
    """The one problem at exactly `path` for `op` (`path (op): ...`), holding every word."""
    prefix = f"{path} ({op}): "
    found = [p for p in problems if p.startswith(prefix)]
    assert len(found) == 1, f"expected one problem starting {prefix!r}, got {problems}"
    for word in words:
        assert word in found[0], f"{word!r} not in {found[0]!r}"
    return found[0]


# -- valid pipelines --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [CFG, None], ids=["config", "bare"])
def test_the_spec_example_is_valid(cfg: WorkspaceConfig | None) -> None:
    assert check_steps(steps(*SPEC_STEPS), cfg) == []


@pytest.mark.parametrize("cfg", [CFG, config(permissions={}), None], ids=["config", "no-permissions", "bare"])
def test_the_default_steps_are_valid(cfg: WorkspaceConfig | None) -> None:
    assert check_steps(steps(*DEFAULT_STEPS), cfg) == []
    assert check_steps(default_steps(), cfg) == []


def test_the_spec_example_through_a_config_has_no_problems() -> None:
    cfg = config(pipeline=SPEC_STEPS)
    assert config_problems(cfg, get_settings()) == []


def test_references_that_hold() -> None:
    pipeline = steps(
        {"op": "session.analyze", "as": "insights"},
        {"op": "agent.execute", "as": "run", "with": {"prompt": "n=${insights.providers.claude-code.sessions}"}},
        {"op": "git.commit", "as": "commit", "with": {"message": "touch ${run.files_changed.0} on ${date}"}},
        {
            "op": "pr.create",
            "if": "not ${run.branch}",
            "with": {"title": "${workspace.id}: ${cycle.deadline}", "body": "${commit.sha} ${workspace.repo}"},
        },
    )
    assert check_steps(pipeline, CFG) == []


def test_pr_create_without_push_or_open_pr_is_not_an_error() -> None:
    cfg = config(permissions={"push": False, "open_pr": False}, pr={"enabled": False})
    assert check_steps(steps({"op": "pr.create", "with": {"title": "t"}}), cfg) == []


# -- one test per kind of problem -------------------------------------------------------------------------


def test_unknown_op() -> None:
    problems = check_steps(steps({"op": "session.analyze"}, {"op": "shell.runn", "with": {"command": ["x"]}}), CFG)
    p = problem(problems, "pipeline[1].op", "shell.runn", "unknown operation")
    assert "shell.run" in p  # the known ops, and a suggestion
    assert len(problems) == 1


def test_missing_argument() -> None:
    problems = check_steps(steps({"op": "session.analyze"}, {"op": "shell.run"}), CFG)
    problem(problems, "pipeline[1].with.command", "shell.run", "required argument is missing")
    assert len(problems) == 1


def test_unknown_argument() -> None:
    problems = check_steps(steps({"op": "pr.create", "with": {"titel": "x"}}), CFG)
    p = problem(problems, "pipeline[0].with.titel", "pr.create", "unknown argument")
    assert "'title'" in p
    assert len(problems) == 1


@pytest.mark.parametrize(
    ("step", "path", "words"),
    [
        ({"op": "pr.create", "with": {"title": ""}}, "pipeline[2].with.title", ["at least 1 character"]),
        ({"op": "shell.run", "with": {"command": "pytest -q"}}, "pipeline[2].with.command", ["valid list"]),
        ({"op": "shell.run", "with": {"command": []}}, "pipeline[2].with.command", ["at least 1 item"]),
        ({"op": "shell.run", "with": {"command": ["ok", 3]}}, "pipeline[2].with.command[1]", ["valid string"]),
        ({"op": "shell.run", "with": {"command": ["a\0b"]}}, "pipeline[2].with.command[0]", ["NUL"]),
        (
            {"op": "http.notify", "with": {"url": "https://hooks.example.com/", "timeout_s": 500}},
            "pipeline[2].with.timeout_s",
            ["less than or equal to 120"],
        ),
        ({"op": "git.commit", "with": {"paths": ["ok", "../up"]}}, "pipeline[2].with.paths[1]", ["relative path"]),
        ({"op": "orchestrate.decide", "with": {"backend": "magic"}}, "pipeline[2].with.backend", ["heuristic"]),
        (
            {"op": "agent.execute", "with": {"prompt": "p", "max_cost_usd": 0}},
            "pipeline[2].with.max_cost_usd",
            ["greater than 0"],
        ),
    ],
)
def test_bad_argument(step: dict[str, Any], path: str, words: list[str]) -> None:
    pipeline = steps({"op": "session.analyze"}, {"op": "orchestrate.decide"}, step)
    problems = check_steps(pipeline, CFG)
    problem(problems, path, step["op"], *words)
    assert len(problems) == 1


@pytest.mark.parametrize(
    ("with_", "path", "words"),
    [
        ({"url": "ftp://hooks.example.com/x"}, "pipeline[0].with.url", ["http"]),
        ({"url": "https:///no-host"}, "pipeline[0].with.url", ["host"]),
        (
            {"url": "https://hooks.example.com/", "headers": {"bad name": "v"}},
            "pipeline[0].with.headers",
            ["not a header name"],
        ),
        ({"url": "https://hooks.example.com/", "headers": {"X-A": "a\nb"}}, "pipeline[0].with.headers", ["line break"]),
    ],
)
def test_bad_notify_argument_in_a_bare_manifest(with_: dict[str, Any], path: str, words: list[str]) -> None:
    # NotifyArgs checks `url` and `headers` with field validators: a bad value is a bad `with` argument.
    problems = check_steps(steps({"op": "http.notify", "with": with_}), None)
    problem(problems, path, "http.notify", *words)


def test_bad_notify_url_scheme_with_a_config_names_the_argument_path() -> None:
    problems = check_steps(steps({"op": "http.notify", "with": {"url": "ftp://hooks.example.com/x"}}), CFG)
    problem(problems, "pipeline[0].with.url", "http.notify", "http")


def test_duplicate_as() -> None:
    pipeline = steps(
        {"op": "shell.run", "as": "tests", "with": {"command": ["pytest"]}},
        {"op": "session.analyze"},
        {"op": "shell.run", "as": "tests", "with": {"command": ["ruff"]}},
    )
    problems = check_steps(pipeline, CFG)
    problem(problems, "pipeline[2].as", "shell.run", "'tests'", "already", "pipeline[0]")
    assert len(problems) == 1


def test_reference_to_an_undefined_name() -> None:
    pipeline = steps(
        {"op": "orchestrate.decide", "as": "decision"},
        {"op": "session.analyze"},
        {"op": "pr.create", "with": {"title": "${decison.title}"}},
    )
    problems = check_steps(pipeline, CFG)
    problem(problems, "pipeline[2].with.title", "pr.create", "${decison.title}", "'decison'", "did you mean 'decision'")
    assert len(problems) == 1


def test_reference_to_a_later_step() -> None:
    pipeline = steps(
        {"op": "session.analyze"},
        {"op": "pr.create", "with": {"title": "${decision.title}"}},
        {"op": "orchestrate.decide", "as": "decision"},
    )
    problems = check_steps(pipeline, CFG)
    problem(problems, "pipeline[1].with.title", "pr.create", "${decision.title}", "defined later", "pipeline[2]")
    assert len(problems) == 1


def test_reference_to_the_step_itself() -> None:
    problems = check_steps(
        steps({"op": "orchestrate.decide", "as": "decision", "with": {"goals": ["${decision.title}"]}}), CFG
    )
    problem(problems, "pipeline[0].with.goals[0]", "orchestrate.decide", "${decision.title}", "own output")


def test_reference_to_a_field_the_output_does_not_have() -> None:
    pipeline = steps(
        {"op": "orchestrate.decide", "as": "decision"},
        {"op": "session.analyze"},
        {"op": "pr.create", "with": {"title": "${decision.titel}"}},
    )
    problems = check_steps(pipeline, CFG)
    problem(problems, "pipeline[2].with.title", "pr.create", "${decision.titel}", "no field 'titel'", "title")
    assert len(problems) == 1


@pytest.mark.parametrize(
    ("ref", "words"),
    [
        ("${run.files_changed.x}", ["not an index"]),
        ("${run.nope}", ["no field 'nope'"]),
        ("${insights.providers.claude-code.nope}", ["providers.claude-code", "no field 'nope'"]),
        ("${cycle.nope}", ["unknown built-in field", "${cycle.id}"]),
        ("${workspace.name}", ["unknown built-in field", "${workspace.repo}"]),
        ("${date.year}", ["unknown built-in field"]),
        ("${env.A.B}", ["expected ${env.NAME}"]),
    ],
)
def test_references_to_fields_that_cannot_exist(ref: str, words: list[str]) -> None:
    pipeline = steps(
        {"op": "session.analyze", "as": "insights"},
        {"op": "agent.execute", "as": "run", "with": {"prompt": "p"}},
        {"op": "pr.create", "with": {"body": f"see {ref}"}},
    )
    problems = check_steps(pipeline, CFG)
    problem(problems, "pipeline[2].with.body", "pr.create", ref, *words)
    assert len(problems) == 1


def test_references_in_nested_arguments_name_the_nested_path() -> None:
    pipeline = steps(
        {"op": "shell.run", "as": "tests", "with": {"command": ["pytest"]}},
        {"op": "http.notify", "with": {"url": "https://hooks.example.com/", "json": {"a": [1, {"b": "${tests.okk}"}]}}},
    )
    problems = check_steps(pipeline, CFG)
    problem(problems, "pipeline[1].with.json.a[1].b", "http.notify", "${tests.okk}", "no field 'okk'")
    assert len(problems) == 1


def test_env_name_not_in_env_allow() -> None:
    pipeline = steps(
        {"op": "session.analyze"},
        {"op": "orchestrate.decide", "with": {"goals": ["${env.NIGHTLY_GOAL}", "${env.SECRET_TOKEN}"]}},
    )
    problems = check_steps(pipeline, CFG)
    problem(problems, "pipeline[1].with.goals[1]", "orchestrate.decide", "SECRET_TOKEN", "env_allow")
    assert len(problems) == 1
    # A bare manifest names no config: env names are checked where a config uses it.
    assert check_steps(pipeline, None) == []


def test_env_name_in_a_header_not_in_env_allow() -> None:
    with_ = {"url": "https://hooks.example.com/", "headers": {"Authorization": "Bearer ${env.HOOK_TOKEN}"}}
    problems = check_steps(steps({"op": "http.notify", "with": with_}), CFG)
    problem(problems, "pipeline[0].with.headers.Authorization", "http.notify", "HOOK_TOKEN", "env_allow")
    assert check_steps(steps({"op": "http.notify", "with": with_}), config(env_allow=["HOOK_TOKEN"])) == []


@pytest.mark.parametrize(
    "cond",
    ["tests.ok", "${tests.ok} and ${tests.ok}", "${tests.ok} == true", "not${tests.ok}", "", "!${tests.ok}"],
)
def test_if_that_is_not_one_expression(cond: str) -> None:
    pipeline = steps(
        {"op": "shell.run", "as": "tests", "with": {"command": ["pytest"]}}, {"op": "pr.create", "if": cond}
    )
    problems = check_steps(pipeline, CFG)
    problem(problems, "pipeline[1].if", "pr.create", "expected one expression")
    assert len(problems) == 1


def test_if_references_are_checked_too() -> None:
    pipeline = steps(
        {"op": "pr.create", "if": "not ${tests.ok}"},
        {"op": "shell.run", "as": "tests", "with": {"command": ["pytest"]}},
        {"op": "git.commit", "if": "${tests.okk}"},
        {"op": "git.commit", "if": "${env.NOPE}"},
    )
    problems = check_steps(pipeline, CFG)
    problem(problems, "pipeline[0].if", "pr.create", "${tests.ok}", "defined later")
    problem(problems, "pipeline[2].if", "git.commit", "${tests.okk}", "no field 'okk'")
    problem(problems, "pipeline[3].if", "git.commit", "${env.NOPE}", "env_allow")
    assert len(problems) == 3


def test_shell_run_without_permissions_shell() -> None:
    cfg = config(permissions={"shell": False})
    pipeline = steps({"op": "session.analyze"}, {"op": "shell.run", "with": {"command": ["pytest"]}})
    problems = check_steps(pipeline, cfg)
    problem(problems, "pipeline[1]", "shell.run", "permissions.shell")
    assert len(problems) == 1
    assert check_steps(pipeline, config(permissions={"shell": []})) == problems


def test_shell_run_program_not_in_the_permissions_shell_list() -> None:
    cfg = config(permissions={"shell": ["pytest", "ruff"]})
    pipeline = steps(
        {"op": "shell.run", "with": {"command": ["pytest", "-q"]}},
        {"op": "shell.run", "with": {"command": ["/tmp/x/ruff", "check"]}},  # a path: maybe the agent's own "ruff"
        {"op": "shell.run", "with": {"command": ["${env.NIGHTLY_GOAL}"]}},  # not literal: checked when it runs
        {"op": "shell.run", "with": {"command": ["make", "test"]}},
    )
    problems = check_steps(pipeline, cfg)
    # The program is argv[0]: the message names that argument's JSON path.
    problem(problems, "pipeline[1].with.command", "shell.run", "'/tmp/x/ruff' is a path", "by name")
    problem(problems, "pipeline[3].with.command", "shell.run", "'make'", "permissions.shell")
    assert len(problems) == 2


def test_http_notify_host_not_in_permissions_network() -> None:
    pipeline = steps(
        {"op": "http.notify", "with": {"url": "https://hooks.example.com/ok"}},
        {"op": "http.notify", "with": {"url": "https://evil.example.com/${cycle.id}"}},
    )
    problems = check_steps(pipeline, CFG)
    # The host is in `url`: the message names that argument's JSON path.
    problem(problems, "pipeline[1].with.url", "http.notify", "evil.example.com", "permissions.network")
    assert len(problems) == 1


def test_http_notify_with_a_substituted_host_needs_some_network_grant() -> None:
    pipeline = steps({"op": "http.notify", "with": {"url": "${env.NIGHTLY_GOAL}"}})
    assert check_steps(pipeline, CFG) == []
    problems = check_steps(pipeline, config(permissions={"shell": True}))
    assert len(problems) == 1
    assert problems[0].startswith("pipeline[0]")
    assert "(http.notify)" in problems[0]
    assert "permissions.network" in problems[0]


def test_agent_execute_unknown_agent_and_missing_prompt() -> None:
    pipeline = steps({"op": "agent.execute", "with": {"agent": "nope"}})
    problems = check_steps(pipeline, CFG)
    problem(problems, "pipeline[0].with.agent", "agent.execute", "unknown agent 'nope'")
    problem(problems, "pipeline[0].with.prompt", "agent.execute", "orchestrate.decide")
    assert len(problems) == 2


# -- strings that are not valid substitutions: problems, never exceptions ---------------------------------


@pytest.mark.parametrize(
    ("step", "path", "words"),
    [
        ({"op": "shell.run", "with": {"command": ["echo", "${oops"]}}, "pipeline[0].with.command[1]", ["unterminated"]),
        ({"op": "pr.create", "with": {"title": "x ${}"}}, "pipeline[0].with.title", ["empty reference"]),
        ({"op": "pr.create", "with": {"body": "${a.b c}"}}, "pipeline[0].with.body", ["'b c'"]),
        (
            {"op": "agent.execute", "with": {"agent": "${oops", "prompt": "p"}},
            "pipeline[0].with.agent",
            ["unterminated"],
        ),
        (
            {"op": "http.notify", "with": {"url": "https://hooks.example.com/${oops"}},
            "pipeline[0].with.url",
            ["unterminated"],
        ),
        ({"op": "shell.run", "with": {"command": ["${oops"]}}, "pipeline[0].with.command[0]", ["unterminated"]),
    ],
)
def test_a_bad_substitution_is_a_problem_not_an_exception(step: dict[str, Any], path: str, words: list[str]) -> None:
    problems = check_steps(steps(step), CFG)
    problem(problems, path, step["op"], *words)


def test_too_deeply_nested_arguments_are_a_problem_not_an_exception() -> None:
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    problems = check_steps(
        steps({"op": "http.notify", "with": {"url": "https://hooks.example.com/", "json": {"a": deep}}})
    )
    assert any(p.startswith("pipeline[0].with") and "(http.notify)" in p and "nested" in p for p in problems), problems


def test_a_bad_substitution_does_not_hide_the_other_problems_of_its_step() -> None:
    pipeline = steps(
        {"op": "orchestrate.decide", "as": "decision"},
        {"op": "pr.create", "with": {"title": "${decison.title}", "body": "${oops", "labels": "${decision.titel}"}},
    )
    problems = check_steps(pipeline, CFG)
    problem(problems, "pipeline[1].with.title", "pr.create", "'decison'")
    problem(problems, "pipeline[1].with.body", "pr.create", "unterminated")
    problem(problems, "pipeline[1].with.labels", "pr.create", "no field 'titel'")


# -- all problems, not just the first -----------------------------------------------------------------------


def test_several_problems_are_all_reported() -> None:
    cfg = config(permissions={"shell": ["pytest"], "network": []})
    pipeline = steps(
        {"op": "session.analyze", "as": "insights", "with": {"since_days": -1}},  # bad argument
        {"op": "orchestrate.decide", "as": "insights"},  # duplicate as
        {"op": "no.such", "with": {"x": 1}},  # unknown op
        {"op": "shell.run", "as": "tests", "with": {"command": ["make"], "colour": True}},  # program, unknown argument
        {"op": "pr.create", "if": "${tests.ok} or ${tests.ok}", "with": {"title": "${later.title}"}},  # if, later ref
        {"op": "http.notify", "as": "later", "with": {"url": "https://x.example.com/${env.NOPE}"}},  # env, network
        {"op": "git.commit", "with": {"message": "${insights.providers.claude-code.nope}"}},  # missing field
    )
    problems = check_steps(pipeline, cfg)
    expected = [
        ("pipeline[0].with.since_days", "session.analyze"),
        ("pipeline[1].as", "orchestrate.decide"),
        ("pipeline[2].op", "no.such"),
        ("pipeline[3].with.colour", "shell.run"),
        ("pipeline[4].if", "pr.create"),
        ("pipeline[4].with.title", "pr.create"),
        ("pipeline[5].with.url", "http.notify"),
        ("pipeline[6].with.message", "git.commit"),
    ]
    for path, op in expected:
        assert any(p.startswith(f"{path} ({op}): ") for p in problems), (path, problems)
    assert any(p.startswith("pipeline[3]") and "'make'" in p for p in problems), problems
    assert any(p.startswith("pipeline[5]") and "x.example.com" in p for p in problems), problems
    assert len(problems) == 10, problems


def test_config_problems_report_every_pipeline_problem() -> None:
    cfg = config(
        pipeline=[
            {"op": "pr.create", "with": {"title": "${decision.title}"}},
            {"op": "orchestrate.decide", "as": "decision"},
            {"op": "shell.run"},
        ]
    )
    problems = config_problems(cfg, get_settings())
    assert [p.split(" ", 1)[0] for p in problems] == ["pipeline[0].with.title", "pipeline[2].with.command"]


def test_no_pipeline_means_no_pipeline_problems() -> None:
    assert config_problems(config(permissions={}), get_settings()) == []


# -- manifest files named by a config ---------------------------------------------------------------------


MANIFEST: dict[str, Any] = {
    "$schema": "https://example.com/orchestrate-manifest.schema.json",
    "id": "nightly",
    "version": "1.2.0",
    "title": "Nightly",
    "description": "analyze, decide, execute, test, publish, notify",
    "pipeline": SPEC_STEPS,
}


def write_config(directory: Path, pipeline: str, **extra: Any) -> Path:
    data = {
        "workspace": {"repo": "/srv/repos/acme"},
        "permissions": {"shell": True, "network": ["hooks.example.com"]},
        "env_allow": ["NIGHTLY_GOAL"],
        "pipeline": pipeline,
        **extra,
    }
    path = directory / "acme.json"
    path.write_text(json.dumps(data))
    return path


def test_a_manifest_file_relative_to_the_config_loads_inline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf" / "pipelines").mkdir(parents=True)
    (tmp_path / "conf" / "pipelines" / "nightly.json").write_text(json.dumps(MANIFEST))
    path = write_config(tmp_path / "conf", "pipelines/nightly.json")
    monkeypatch.chdir(tmp_path)  # relative to the config's directory, not the working directory
    cfg = load_config(path)
    assert isinstance(cfg.pipeline, list)
    assert [s.op for s in cfg.pipeline] == [s["op"] for s in SPEC_STEPS]
    assert cfg.pipeline[3].with_ == SPEC_STEPS[3]["with"]
    assert cfg.pipeline[4].if_ == "${tests.ok}"
    assert cfg._manifest is not None
    assert (cfg._manifest.id, cfg._manifest.version) == ("nightly", "1.2.0")
    assert config_problems(cfg, get_settings()) == []
    # Inline: the dumped config carries the steps, not the file name.
    assert isinstance(cfg.model_dump(mode="json", by_alias=True)["pipeline"], list)


def test_parse_config_reads_the_manifest_relative_to_base_dir(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text(json.dumps({"pipeline": [{"op": "session.analyze"}]}))
    cfg = parse_config({"workspace": {"repo": "/srv/x"}, "pipeline": "m.json"}, "cfg", base_dir=tmp_path)
    assert isinstance(cfg.pipeline, list)
    assert [s.op for s in cfg.pipeline] == ["session.analyze"]


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return exc.value


def test_a_missing_manifest_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "pipelines/missing.json")
    err = config_error(path)
    assert err.source == str(path)
    assert len(err.errors) == 1
    line = err.errors[0]
    assert line.startswith("pipeline: ")
    assert str(tmp_path / "pipelines" / "missing.json") in line
    assert "cannot read file" in line
    assert "No such file" in line
    assert str(tmp_path / "pipelines" / "missing.json") in str(err)


def test_an_unreadable_manifest_file(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    if os.geteuid() == 0:  # root reads a chmod 000 file: a directory is unreadable as a file for anyone
        target.mkdir()
    else:
        target.write_text(json.dumps(MANIFEST))
        target.chmod(0)
    try:
        err = config_error(write_config(tmp_path, "m.json"))
    finally:
        if target.is_file():
            target.chmod(0o644)
    assert len(err.errors) == 1
    assert err.errors[0].startswith(f"pipeline: {target}: cannot read file: ")
    assert ("Permission denied" in err.errors[0]) or ("Is a directory" in err.errors[0])


def test_a_manifest_file_that_is_not_json(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text('{"pipeline": [ {"op": "shell.run",, } ]')
    err = config_error(write_config(tmp_path, "m.json"))
    assert len(err.errors) == 1
    assert err.errors[0].startswith(f"pipeline: {tmp_path / 'm.json'}: (root): invalid JSON")


def test_a_manifest_file_that_is_not_an_object(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text("[1, 2]")
    err = config_error(write_config(tmp_path, "m.json"))
    assert err.errors == [f"pipeline: {tmp_path / 'm.json'}: (root): expected a JSON object, got list"]


def test_a_manifest_with_a_bad_version(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text(json.dumps({**MANIFEST, "version": "1.0"}))
    err = config_error(write_config(tmp_path, "m.json"))
    assert len(err.errors) == 1
    line = err.errors[0]
    assert line.startswith(f"pipeline: {tmp_path / 'm.json'}: version: ")
    assert "semantic version" in line
    assert '"1.0"' in line


def test_every_error_of_a_manifest_file_is_reported(tmp_path: Path) -> None:
    bad = {
        "id": "-bad id-",
        "version": "1.0",
        "unknown": 1,
        "pipeline": [
            {"op": "Shell Run"},
            {"op": "pr.create", "as": "env"},
            {"op": "shell.run", "timeout_s": 0},
            {"op": "shell.run", "wiht": {}},
        ],
    }
    (tmp_path / "m.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError) as exc:
        load_manifest(tmp_path / "m.json")
    paths = [line.split(":", 1)[0] for line in exc.value.errors]
    assert sorted(paths) == sorted(
        ["id", "version", "unknown", "pipeline[0].op", "pipeline[1].as", "pipeline[2].timeout_s", "pipeline[3].wiht"]
    )
    assert exc.value.source == str(tmp_path / "m.json")


def test_a_manifest_with_no_steps(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text(json.dumps({**MANIFEST, "pipeline": []}))
    err = config_error(write_config(tmp_path, "m.json"))
    assert any("pipeline: " in e and "at least one step" in e for e in err.errors), err.errors


# -- validation is pure -------------------------------------------------------------------------------------


INVALID: list[dict[str, Any]] = [
    {"op": "shell.run", "as": "tests", "with": {"command": ["make"]}},
    {"op": "http.notify", "with": {"url": "https://evil.example.com/", "json": {"ok": "${tests.okk}"}}},
    {"op": "agent.execute", "with": {"agent": "nope"}},
    {"op": "no.such"},
    {"op": "pr.create", "if": "${x} ${y}"},
]


def test_validation_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("ORCH_STATE_DIR", str(state))
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.state_dir == state
    len(OPS)  # the op modules are imported before the guards go up

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("validation must not start a process or open a connection")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(os, "fork", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)

    cfg = config(permissions={"shell": ["pytest"], "network": ["hooks.example.com"]}, pipeline=INVALID)
    problems = config_problems(cfg, settings)
    assert len(problems) >= 5
    assert check_steps(steps(*INVALID), cfg) == problems
    assert check_steps(steps(*INVALID), None)
    assert list(state.rglob("*")) == []
    get_settings.cache_clear()
