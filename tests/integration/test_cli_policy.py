"""The host's ceiling (ORCH_ALLOW) and the agent-shell warning as a user meets them on the command line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import orchestrate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def show(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


@pytest.fixture
def env(orch_env: dict[str, str]) -> dict[str, str]:
    """The test environment without any ceiling or agent user the calling shell may have set."""
    clean = dict(orch_env)
    for name in ("ORCH_ALLOW", "ORCH_AGENT_USER"):
        clean.pop(name, None)
    return clean


def write_config(tmp: Path, name: str, agents: dict[str, Any], **extra: Any) -> Path:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps({"id": name, "workspace": {"repo": str(tmp / "repo")}, "agents": agents, **extra}))
    return path


def test_validate_refuses_bypass_unless_the_host_allows_it(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = write_config(tmp_path, "bypass", {"claude-code": {"permission_mode": "bypassPermissions"}})
    refused = orchestrate(["validate", str(cfg)], env)
    assert refused.returncode == 2, show(refused)
    assert f"{cfg}: agents.claude-code.permission_mode: bypassPermissions is not allowed on this host" in refused.stdout
    assert 'ORCH_ALLOW lacks "bypass"' in refused.stdout
    # `run` and the other commands that load one config refuse it the same way
    run = orchestrate(["schedule", str(cfg)], env)
    assert run.returncode == 2 and "bypassPermissions is not allowed on this host" in run.stderr, show(run)

    allowed = orchestrate(["validate", str(cfg)], dict(env, ORCH_ALLOW="bypass"))
    assert allowed.returncode == 0, show(allowed)
    assert "ok" in allowed.stdout and "not allowed" not in allowed.stdout
    assert orchestrate(["schedule", str(cfg)], dict(env, ORCH_ALLOW="bypass")).returncode == 0


def test_validate_refuses_network_hosts_beyond_the_ceiling(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = write_config(tmp_path, "net", {}, permissions={"network": ["hooks.example.com:443"]})
    refused = orchestrate(["validate", str(cfg)], env)
    assert refused.returncode == 2, show(refused)
    assert "permissions.network[0]: hooks.example.com:443 is not allowed on this host" in refused.stdout
    allowed = orchestrate(["validate", str(cfg)], dict(env, ORCH_ALLOW="network:Hooks.Example.com"))
    assert allowed.returncode == 0, show(allowed)


def test_validate_warns_about_a_shell_without_an_agent_user(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = write_config(tmp_path, "bash", {"claude-code": {"allowed_tools": ["Edit", "Bash(npm test:*)"]}})
    warned = orchestrate(["validate", str(cfg)], env)
    assert warned.returncode == 0, show(warned)
    warning = [line for line in warned.stdout.splitlines() if line.startswith("warning ")]
    assert warning, show(warned)
    assert "claude-code (allowed_tools includes Bash)" in warning[0]
    assert "worker's OS user" in warning[0] and "ORCH_AGENT_USER" in warning[0]

    quiet = orchestrate(["validate", str(cfg)], dict(env, ORCH_AGENT_USER="orch-agent"))
    assert quiet.returncode == 0 and "warning" not in quiet.stdout, show(quiet)
    plain = write_config(tmp_path, "plain", {})
    assert "warning" not in orchestrate(["validate", str(plain)], env).stdout


@pytest.mark.parametrize("args", [["worker", "--agents", "claude-code"], ["validate", "x.json"]])
def test_an_unknown_allow_token_is_an_invalid_environment(args: list[str], env: dict[str, str]) -> None:
    proc = orchestrate(args, dict(env, ORCH_ALLOW="bypass, bogus"))
    assert proc.returncode == 2, show(proc)
    assert "invalid environment: ORCH_ALLOW" in proc.stderr and "'bogus'" in proc.stderr, show(proc)
    assert "worker queues" not in proc.stderr  # it stopped before starting Celery


def test_a_bad_agent_user_is_an_invalid_environment(env: dict[str, str]) -> None:
    proc = orchestrate(["validate", "x.json"], dict(env, ORCH_AGENT_USER="-root"))
    assert proc.returncode == 2, show(proc)
    assert "ORCH_AGENT_USER" in proc.stderr and "POSIX user name" in proc.stderr, show(proc)
