"""Workspace config: the minimal config works, the full example validates, errors name the JSON path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestration.config import ConfigError, load_config, load_config_dir, parse_config

FULL = {
    "id": "acme-api",
    "workspace": {"repo": "/srv/repos/acme-api", "base_branch": "main", "remote": "origin"},
    "schedule": {
        "cron": "*/30 1-5 * * *",
        "timezone": "UTC",
        "window": {"start": "01:00", "end": "05:00"},
        "jitter_s": 300,
        "on_missed": "skip",
    },
    "budget": {
        "cycle_s": 1800,
        "max_turns": 40,
        "max_cost_usd": 5.0,
        "daily_cost_usd": 25.0,
        "idle_timeout_s": 300,
        "prices": {},
    },
    "sessions": {
        "providers": ["claude-code", "codex"],
        "claude_dir": "~/.claude",
        "codex_dir": "~/.codex",
        "since_days": 14,
        "max_sessions": 200,
    },
    "goals": ["raise test coverage of the billing module"],
    "focus": {"include": ["src/**", "tests/**"], "exclude": ["migrations/**"]},
    "agents": {
        "allow": ["claude-code", "codex"],
        "prefer": "claude-code",
        "claude-code": {
            "command": "claude",
            "model": None,
            "permission_mode": "acceptEdits",
            "allowed_tools": [],
            "disallowed_tools": [],
            "env": {},
        },
        "codex": {"command": "codex", "model": None, "sandbox": "workspace-write", "env": {}},
    },
    "decision": {
        "backend": "auto",
        "min_confidence": 0.5,
        "avoid_repeat_days": 7,
        "llm": {
            "base_url": "http://localhost:11434/v1",
            "model": "qwen2.5-coder:7b",
            "api_key_env": "OPENAI_API_KEY",
            "timeout_s": 60,
        },
    },
    "pr": {
        "enabled": True,
        "draft": True,
        "branch_prefix": "agent/orchestration/",
        "base": None,
        "repo": None,
        "labels": [],
        "require_changes": True,
        "open_on_failure": False,
    },
    "permissions": {
        "write": ["**"],
        "deny_write": [".github/**"],
        "push": True,
        "open_pr": True,
        "shell": False,
        "network": [],
    },
    "env_allow": [],
    "pipeline": None,
}


def test_minimal_config_gets_defaults() -> None:
    cfg = parse_config({"workspace": {"repo": "/srv/repos/Acme API"}})
    assert cfg.id == "acme-api"
    assert cfg.budget.cycle_s == 1800
    assert cfg.agents.prefer == "claude-code"
    assert cfg.agents.claude_code.permission_mode == "acceptEdits"
    assert cfg.pr_base == "main"


def test_spec_example_validates_and_round_trips() -> None:
    cfg = parse_config(FULL)
    assert cfg.schedule.window is not None and cfg.schedule.window.start == "01:00"
    again = parse_config(cfg.model_dump(mode="json", by_alias=True))
    assert again == cfg


def test_id_from_git_url() -> None:
    assert parse_config({"workspace": {"repo": "git@github.com:acme/api.git"}}).id == "api"


@pytest.mark.parametrize(
    ("patch", "path", "fragment"),
    [
        ({"agents": {"prefer": "gpt"}}, "agents.prefer", "claude-code"),
        ({"agents": {"claude-code": {"bogus": 1}}}, "agents.claude-code.bogus", "unknown field"),
        ({"budget": {"cycle_s": 0}}, "budget.cycle_s", "greater than 0"),
        ({"schedule": {"cron": "61 * * * *"}}, "schedule.cron", "61 is outside 0-59"),
        ({"schedule": {"timezone": "Mars/Olympus"}}, "schedule.timezone", "unknown timezone"),
        ({"schedule": {"window": {"start": "25:00"}}}, "schedule.window.start", "HH:MM"),
        ({"pr": {"repo": "not a repo"}}, "pr.repo", "OWNER/NAME"),
        ({"sessions": {"providers": ["cursor"]}}, "sessions.providers[0]", "claude-code"),
        ({"extra": True}, "extra", "unknown field"),
        ({"agents": {"allow": ["codex"], "prefer": "claude-code"}}, "agents", "not in allow"),
    ],
)
def test_errors_name_the_json_path(patch: dict[str, object], path: str, fragment: str) -> None:
    data: dict[str, object] = {"workspace": {"repo": "/x"}, **patch}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert any(line.startswith(f"{path}:") and fragment in line for line in info.value.errors), info.value.errors


def test_missing_repo_and_non_object() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({})
    assert info.value.errors == ["workspace: required field is missing"]
    with pytest.raises(ConfigError):
        parse_config([1, 2])


def test_env_reference_must_be_allowed() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"workspace": {"repo": "/x"}, "agents": {"codex": {"env": {"A": "${env.SECRET}"}}}})
    assert "env_allow" in str(info.value)
    ok = parse_config(
        {"workspace": {"repo": "/x"}, "env_allow": ["SECRET"], "agents": {"codex": {"env": {"A": "${env.SECRET}"}}}}
    )
    assert ok.agents.codex.env == {"A": "${env.SECRET}"}


def test_load_files_and_directory(tmp_path: Path) -> None:
    (tmp_path / "good.json").write_text(json.dumps({"workspace": {"repo": "/a"}}))
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "dup.json").write_text(json.dumps({"workspace": {"repo": "/other/a"}}))
    good, bad = load_config_dir(tmp_path)
    assert [p.name for p, _ in good] == ["dup.json"] or [p.name for p, _ in good] == ["good.json"]
    assert len(bad) == 2
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "bad.json")
    assert "invalid JSON" in info.value.errors[0]
    with pytest.raises(ConfigError):
        load_config(tmp_path / "missing.json")
