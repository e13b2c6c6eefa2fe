"""Config values that reach git, gh or an agent CLI can never be read as options or code; errors name the path."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestration.config import (
    NEVER_FOR_AGENTS,
    ConfigError,
    never_for_agents,
    parse_config,
    parse_network_entry,
    ref_name_problem,
)
from tests.helpers import make_repo

UPLOAD_PACK = "--upload-pack=touch /tmp/x"


def config(**patch: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"workspace": {"repo": "/srv/repo"}}
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def errors_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.errors


def assert_refused(data: dict[str, Any], path: str, fragment: str, value: str | None = None) -> None:
    errors = errors_of(data)
    hits = [line for line in errors if line.startswith(f"{path}: ") and fragment in line]
    assert hits, errors
    if value is not None:
        assert value in hits[0], hits


@pytest.mark.parametrize(
    ("patch", "path", "fragment", "shown"),
    [
        ({"workspace": {"remote": UPLOAD_PACK}}, "workspace.remote", "git remote name", '"--upload-pack=touch /tmp/x"'),
        ({"workspace": {"remote": "a..b"}}, "workspace.remote", "'..'", '"a..b"'),
        ({"workspace": {"remote": "up.lock"}}, "workspace.remote", ".lock", '"up.lock"'),
        ({"workspace": {"base_branch": "-x"}}, "workspace.base_branch", "must not start with '-'", '"-x"'),
        ({"workspace": {"base_branch": "main..x"}}, "workspace.base_branch", "'..'", '"main..x"'),
        ({"workspace": {"base_branch": "a.lock"}}, "workspace.base_branch", ".lock", '"a.lock"'),
        ({"workspace": {"base_branch": "x y"}}, "workspace.base_branch", "spaces", '"x y"'),
        ({"workspace": {"base_branch": "a:b"}}, "workspace.base_branch", "':'", None),
        ({"workspace": {"base_branch": "@"}}, "workspace.base_branch", "'@' alone", None),
        ({"workspace": {"base_branch": "x@{1}"}}, "workspace.base_branch", "'@{'", None),
        ({"workspace": {"base_branch": "a/.b"}}, "workspace.base_branch", "start with '.'", None),
        ({"workspace": {"base_branch": "main/"}}, "workspace.base_branch", "end with '/'", None),
        ({"workspace": {"repo": "ext::sh -c touch% /tmp/pwned"}}, "workspace.repo", "'ext::'", '"ext::sh'),
        ({"workspace": {"repo": "fd::3"}}, "workspace.repo", "remote-helper", None),
        ({"workspace": {"repo": "-oProxyCommand=x"}}, "workspace.repo", "must not start with '-'", None),
        ({"workspace": {"repo": "ssh://-oProxyCommand=x/r"}}, "workspace.repo", "host must not start", None),
        ({"workspace": {"repo": "/srv/a\nb"}}, "workspace.repo", "control characters", None),
        ({"pr": {"base": "-x"}}, "pr.base", "must not start with '-'", '"-x"'),
        ({"pr": {"base": "main..x"}}, "pr.base", "'..'", None),
        ({"pr": {"branch_prefix": "-x"}}, "pr.branch_prefix", "must not start with '-'", '"-x"'),
        ({"pr": {"branch_prefix": "agent/.x/"}}, "pr.branch_prefix", "start with '.'", None),
        ({"pr": {"branch_prefix": "a b/"}}, "pr.branch_prefix", "spaces", None),
        ({"pr": {"repo": "-x/y"}}, "pr.repo", "letter or digit", '"-x/y"'),
        ({"pr": {"repo": "x/-y"}}, "pr.repo", "letter or digit", None),
        ({"pr": {"labels": ["ok", "-x"]}}, "pr.labels[1]", "must not start with '-'", '"-x"'),
        ({"pr": {"labels": ["bug\nfix"]}}, "pr.labels[0]", "control characters", None),
        ({"pr": {"labels": [""]}}, "pr.labels[0]", "must not be empty", None),
        ({"pr": {"labels": ["x" * 101]}}, "pr.labels[0]", "at most 100", None),
        ({"agents": {"claude-code": {"model": "-x"}}}, "agents.claude-code.model", "must not start with '-'", '"-x"'),
        ({"agents": {"codex": {"model": "-x"}}}, "agents.codex.model", "must not start with '-'", None),
        ({"agents": {"codex": {"model": "gpt\n5"}}}, "agents.codex.model", "control characters", None),
        (
            {"agents": {"claude-code": {"allowed_tools": ["Edit", "-x"]}}},
            "agents.claude-code.allowed_tools[1]",
            "'-'",
            None,
        ),
        (
            {"agents": {"claude-code": {"disallowed_tools": ["-x"]}}},
            "agents.claude-code.disallowed_tools[0]",
            "'-'",
            None,
        ),
        ({"agents": {"claude-code": {"command": "-x"}}}, "agents.claude-code.command", "'-'", None),
        ({"agents": {"codex": {"command": "bin/codex"}}}, "agents.codex.command", "absolute path", None),
        ({"decision": {"llm": {"api_key_env": "BAD-NAME"}}}, "decision.llm.api_key_env", "variable name", None),
        ({"env_allow": ["OK", "1X"]}, "env_allow[1]", "variable name", '"1X"'),
        ({"agents": {"codex": {"env": {"bad-key": "1"}}}}, "agents.codex.env.bad-key", "variable name", None),
    ],
)
def test_refused_values_name_path_value_and_reason(
    patch: dict[str, Any], path: str, fragment: str, shown: str | None
) -> None:
    assert_refused(config(**patch), path, fragment, shown)


def test_llm_key_variable_must_be_listed_in_env_allow() -> None:
    data = config(decision={"llm": {"api_key_env": "GH_TOKEN", "base_url": "https://llm.example.com/v1"}})
    assert_refused(data, "decision.llm.api_key_env", "env_allow", "https://llm.example.com/v1")
    cfg = parse_config({**data, "env_allow": ["GH_TOKEN"]})
    assert cfg.decision.llm.api_key_env == "GH_TOKEN"
    assert parse_config(config()).decision.llm.api_key_env == "OPENAI_API_KEY"  # the default needs no listing


@pytest.mark.parametrize("agent", ["claude-code", "codex"])
def test_agent_env_never_gets_worker_secrets_even_when_allowed(agent: str) -> None:
    allow = ["GH_TOKEN", "ORCH_REDIS_URL", "CELERY_BROKER_URL"]
    assert_refused(
        config(agents={agent: {"env": {"GH_TOKEN": "x"}}}, env_allow=allow), f"agents.{agent}.env.GH_TOKEN", "never"
    )
    assert_refused(
        config(agents={agent: {"env": {"A": "${env.ORCH_REDIS_URL}"}}}, env_allow=allow),
        f"agents.{agent}.env.A",
        "never passed to an agent",
    )
    assert_refused(
        config(agents={agent: {"env": {"B": "x${env.CELERY_BROKER_URL}"}}}, env_allow=allow),
        f"agents.{agent}.env.B",
        "never",
    )
    ok = parse_config(config(agents={agent: {"env": {"A": "${env.SAFE}"}}}, env_allow=["SAFE"]))
    assert ok.agents.env_for(agent) == {"A": "${env.SAFE}"}


def test_env_reference_not_in_env_allow_names_its_path() -> None:
    assert_refused(config(agents={"codex": {"env": {"A": "${env.SECRET}"}}}), "agents.codex.env.A", "env_allow")


@pytest.mark.parametrize(
    "name",
    ["GH_TOKEN", "GITHUB_TOKEN", "GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN", "REDIS_URL", "REDIS_PASSWORD",
     "BROKER_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CELERY_ANYTHING", "ORCH_SERVE_TOKEN", "gh_token"],
)  # fmt: skip
def test_never_for_agents(name: str) -> None:
    assert never_for_agents(name)


def test_never_for_agents_leaves_ordinary_names() -> None:
    assert "GH_TOKEN" in NEVER_FOR_AGENTS
    assert not any(never_for_agents(n) for n in ["PATH", "HOME", "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "ORCHID"])


def test_network_is_a_host_list() -> None:
    cfg = parse_config(config(permissions={"network": ["api.example.com", "Hooks.Example.com:443", "10.0.0.1:8080"]}))
    assert cfg.permissions.network == ["api.example.com", "Hooks.Example.com:443", "10.0.0.1:8080"]
    assert parse_config(config()).permissions.network == []
    assert parse_config(config(permissions={"network": False})).permissions.network == []  # the legacy boolean
    assert_refused(config(permissions={"network": True}), "permissions.network", "list the hosts")
    assert_refused(
        config(permissions={"network": ["ok.com", "bad_host"]}), "permissions.network[1]", "host", '"bad_host"'
    )
    assert_refused(config(permissions={"network": ["-x.com"]}), "permissions.network[0]", "host")
    assert_refused(config(permissions={"network": ["a.com:0"]}), "permissions.network[0]", "1 to 65535")
    assert_refused(config(permissions={"network": ["a.com:65536"]}), "permissions.network[0]", "1 to 65535")
    assert_refused(config(permissions={"network": ["a.com:http"]}), "permissions.network[0]", "1 to 65535")
    assert_refused(config(permissions={"network": ["1.2.3.256"]}), "permissions.network[0]", "IPv4")


def test_parse_network_entry() -> None:
    assert parse_network_entry("API.example.com") == ("api.example.com", None)
    assert parse_network_entry("api.example.com:443") == ("api.example.com", 443)
    assert parse_network_entry("127.0.0.1:65535") == ("127.0.0.1", 65535)
    with pytest.raises(ValueError, match="port"):
        parse_network_entry("a.com:")


def test_shell_is_true_or_program_names() -> None:
    assert parse_config(config()).permissions.shell is False
    assert parse_config(config(permissions={"shell": True})).permissions.shell is True
    assert parse_config(config(permissions={"shell": ["pytest", "npm"]})).permissions.shell == ["pytest", "npm"]
    assert_refused(config(permissions={"shell": ["pytest", "/bin/sh"]}), "permissions.shell", "bare program name")
    assert_refused(config(permissions={"shell": ["-c"]}), "permissions.shell", "bare program name")
    assert_refused(config(permissions={"shell": "yes"}), "permissions.shell", "list of program names")


def test_good_values_and_defaults_stay_valid() -> None:
    cfg = parse_config(
        config(
            workspace={"repo": "git@github.com:acme/api.git", "base_branch": "release/2.x", "remote": "up-stream.1"},
            pr={"base": "develop", "branch_prefix": "", "repo": "ghe.example.com/acme/api", "labels": ["agent: bot"]},
            agents={"claude-code": {"command": "/opt/bin/claude", "model": "claude-sonnet-4-5",
                                    "allowed_tools": ["Edit", "Bash(git diff:*)"]}},
        )
    )  # fmt: skip
    assert cfg.workspace.remote == "up-stream.1"
    default = parse_config(config())
    assert (default.workspace.remote, default.workspace.base_branch, default.pr.branch_prefix) == (
        "origin",
        "main",
        "agent/orchestration/",
    )
    for url in ["https://github.com/acme/api.git", "ssh://git@github.com/acme/api.git", "file:///srv/a.git"]:
        assert parse_config(config(workspace={"repo": url})).workspace.is_url


@pytest.mark.parametrize(
    ("name", "prefix", "ok"),
    [
        ("main", False, True),
        ("feature/x-1", False, True),
        ("", False, False),
        ("", True, True),
        ("agent/orchestration/", True, True),
        ("agent/orchestration/", False, False),
        ("agent.", True, False),
        ("a//b", True, False),
        ("/a", False, False),
        ("a\x7fb", False, False),
        ("a\\b", False, False),
        ("a?b", False, False),
        ("a*b", False, False),
        ("a[b", False, False),
        ("a~1", False, False),
        ("a^", False, False),
    ],
)
def test_ref_name_problem(name: str, prefix: bool, ok: bool) -> None:
    assert (ref_name_problem(name, prefix=prefix) is None) is ok


def test_refused_remote_really_runs_code_and_is_now_refused(tmp_path: Path) -> None:
    """The attack, demonstrated: the fetch the mirror update makes runs whatever `--upload-pack=` names."""
    work, _bare = make_repo(tmp_path)
    marker = tmp_path / "pwned"
    remote = f"--upload-pack=touch {marker}"
    subprocess.run(["git", "fetch", "--quiet", "--prune", remote], cwd=work, capture_output=True, check=False)  # noqa: S603
    assert marker.exists(), "git ran the remote name as a command"
    marker.unlink()
    assert_refused(
        config(workspace={"repo": str(work), "remote": remote}),
        "workspace.remote",
        "git remote name",
        "--upload-pack=touch",
    )
    assert not marker.exists()
