"""The host's ceiling (ORCH_ALLOW): parsing, what a config may not use beyond it, and the agent-shell warning."""

from __future__ import annotations

from typing import Any

import pytest

from orchestration.config import WorkspaceConfig, parse_config
from orchestration.policy import HostPolicy, policy_problems, shell_warning
from orchestration.settings import Settings


def cfg(**patch: Any) -> WorkspaceConfig:
    return parse_config({"workspace": {"repo": "/srv/repo"}, **patch})


def settings(**values: Any) -> Settings:
    return Settings(**values)


# -- parsing -------------------------------------------------------------------------------------------


def test_empty_allows_nothing() -> None:
    for text in ["", "  ", ",", " , ,"]:
        assert HostPolicy.parse(text) == HostPolicy()
    assert HostPolicy() == HostPolicy(bypass=False, shell=False, network=frozenset())


def test_parse_tokens_with_whitespace() -> None:
    policy = HostPolicy.parse(" bypass ,shell,  network:Hooks.Example.com:443 , network:api.example.com,")
    assert policy.bypass and policy.shell
    assert policy.network == {("hooks.example.com", 443), ("api.example.com", None)}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("bogus", "'bogus'"),
        ("bypass,Shell", "'Shell'"),
        ("network", "'network'"),
        ("network:", "network:"),
        ("network:bad_host", "bad_host"),
        ("network:a.com:0", "1 to 65535"),
        ("network:a.com:99999", "1 to 65535"),
    ],
)
def test_parse_refuses_unknown_or_bad_tokens(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="ORCH_ALLOW") as info:
        HostPolicy.parse(text)
    assert fragment in str(info.value)


def test_from_settings_and_settings_refuse_a_bad_allow(monkeypatch: pytest.MonkeyPatch) -> None:
    assert HostPolicy.from_settings(settings(allow="shell")) == HostPolicy(shell=True)
    monkeypatch.setenv("ORCH_ALLOW", "bypass, network:x.org")
    assert HostPolicy.from_settings(Settings()) == HostPolicy(bypass=True, network=frozenset({("x.org", None)}))
    monkeypatch.setenv("ORCH_ALLOW", "bogus")
    with pytest.raises(ValueError, match="bogus"):
        Settings()


def test_settings_agent_user_is_a_user_name() -> None:
    assert settings(agent_user="orch-agent").agent_user == "orch-agent"
    assert settings().agent_user is None and settings().serve_token is None and settings().allow == ""
    assert settings(agent_user="", serve_token="").agent_user is None  # empty means unset
    assert settings(serve_token="").serve_token is None
    for bad in ["-root", "a b", "x;id", "a" * 33, "1abc"]:
        with pytest.raises(ValueError, match="POSIX user name"):
            settings(agent_user=bad)


# -- problems --------------------------------------------------------------------------------------------


def test_defaults_need_nothing() -> None:
    assert policy_problems(cfg(), HostPolicy()) == []


def test_bypass_permission_mode_and_full_access_sandbox() -> None:
    claude = cfg(agents={"claude-code": {"permission_mode": "bypassPermissions"}})
    assert policy_problems(claude, HostPolicy()) == [
        'agents.claude-code.permission_mode: bypassPermissions is not allowed on this host (ORCH_ALLOW lacks "bypass")'
    ]
    assert policy_problems(claude, HostPolicy.parse("bypass")) == []
    codex = cfg(agents={"codex": {"sandbox": "danger-full-access"}})
    [line] = policy_problems(codex, HostPolicy.parse("shell"))
    assert (
        line.startswith("agents.codex.sandbox: danger-full-access is not allowed on this host") and '"bypass"' in line
    )
    assert policy_problems(codex, HostPolicy.parse("bypass")) == []


def test_only_allowed_agents_count() -> None:
    data = {"claude-code": {"permission_mode": "bypassPermissions"}, "codex": {"sandbox": "danger-full-access"}}
    assert policy_problems(cfg(agents={"allow": ["codex"], "prefer": "codex", **data}), HostPolicy()) == [
        'agents.codex.sandbox: danger-full-access is not allowed on this host (ORCH_ALLOW lacks "bypass")'
    ]
    [line] = policy_problems(cfg(agents={"allow": ["claude-code"], **data}), HostPolicy())
    assert line.startswith("agents.claude-code.permission_mode:")


@pytest.mark.parametrize("shell", [True, ["pytest"]])
def test_shell(shell: Any) -> None:
    config = cfg(permissions={"shell": shell})
    [line] = policy_problems(config, HostPolicy())
    assert line.startswith("permissions.shell: ") and '(ORCH_ALLOW lacks "shell")' in line
    assert policy_problems(config, HostPolicy.parse("shell")) == []
    assert policy_problems(cfg(permissions={"shell": []}), HostPolicy()) == []


def test_network_hosts_and_ports() -> None:
    config = cfg(permissions={"network": ["api.example.com", "hooks.example.com:443"]})
    assert policy_problems(config, HostPolicy()) == [
        "permissions.network[0]: api.example.com is not allowed on this host "
        '(ORCH_ALLOW lacks "network:api.example.com")',
        "permissions.network[1]: hooks.example.com:443 is not allowed on this host "
        '(ORCH_ALLOW lacks "network:hooks.example.com" or "network:hooks.example.com:443")',
    ]
    # a host token allows any port; a host:port token allows that port only, never a portless (any-port) entry
    assert policy_problems(config, HostPolicy.parse("network:api.example.com,network:hooks.example.com")) == []
    assert policy_problems(config, HostPolicy.parse("network:api.example.com,network:hooks.example.com:443")) == []
    [line] = policy_problems(config, HostPolicy.parse("network:api.example.com:443,network:hooks.example.com:443"))
    assert line.startswith("permissions.network[0]: api.example.com ")
    [line] = policy_problems(config, HostPolicy.parse("network:api.example.com,network:hooks.example.com:8443"))
    assert line.startswith("permissions.network[1]: hooks.example.com:443 ")
    [line] = policy_problems(config, HostPolicy.parse("network:api.example.com,network:other.example.com"))
    assert line.startswith("permissions.network[1]: ")


def test_network_hostnames_compare_case_insensitively() -> None:
    config = cfg(permissions={"network": ["API.Example.COM:443"]})
    assert policy_problems(config, HostPolicy.parse("network:api.example.com")) == []
    assert (
        policy_problems(cfg(permissions={"network": ["api.example.com"]}), HostPolicy.parse("network:API.EXAMPLE.com"))
        == []
    )
    assert HostPolicy.parse("network:A.b").allows_network("a.B", 1)


def test_every_problem_at_once() -> None:
    config = cfg(
        agents={"claude-code": {"permission_mode": "bypassPermissions"}, "codex": {"sandbox": "danger-full-access"}},
        permissions={"shell": True, "network": ["10.0.0.1:22"]},
    )
    paths = [line.split(":", 1)[0] for line in policy_problems(config, HostPolicy())]
    assert paths == [
        "agents.claude-code.permission_mode",
        "agents.codex.sandbox",
        "permissions.shell",
        "permissions.network[0]",
    ]
    assert policy_problems(config, HostPolicy.parse("bypass,shell,network:10.0.0.1:22")) == []


# -- shell warning ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agents", "names"),
    [
        ({"claude-code": {"allowed_tools": ["Edit", "Bash"]}}, "claude-code (allowed_tools includes Bash)"),
        ({"claude-code": {"allowed_tools": ["Bash(npm test:*)"]}}, "claude-code (allowed_tools includes Bash)"),
        ({"claude-code": {"permission_mode": "bypassPermissions"}}, "claude-code (permission_mode bypassPermissions)"),
        ({"codex": {"sandbox": "danger-full-access"}}, "codex (sandbox danger-full-access)"),
    ],
)
def test_shell_warning_when_an_agent_has_a_shell(agents: dict[str, Any], names: str) -> None:
    warning = shell_warning(cfg(agents=agents), settings())
    assert warning is not None
    assert warning.startswith(names)
    assert "ORCH_AGENT_USER" in warning and "worker's OS user" in warning and "unprivileged user" in warning
    assert shell_warning(cfg(agents=agents), settings(agent_user="orch-agent")) is None


def test_no_shell_warning_without_a_shell() -> None:
    assert shell_warning(cfg(), settings()) is None
    tools = {"claude-code": {"allowed_tools": ["Edit", "BashOutput", "Read(Bash.md)"]}}
    assert shell_warning(cfg(agents=tools), settings()) is None
    assert shell_warning(cfg(agents={"codex": {"sandbox": "read-only"}}), settings()) is None
    only_codex = {"allow": ["codex"], "prefer": "codex", "claude-code": {"allowed_tools": ["Bash"]}}
    assert shell_warning(cfg(agents=only_codex), settings()) is None


def test_shell_warning_names_both_agents() -> None:
    both = {"claude-code": {"allowed_tools": ["Bash"]}, "codex": {"sandbox": "danger-full-access"}}
    warning = shell_warning(cfg(agents=both), settings())
    assert warning is not None and "claude-code" in warning and "codex" in warning
