"""The one-machine deployment's promises, read from compose.yaml and the Dockerfile: Redis private and
password-protected, Flower opt-in behind auth on 127.0.0.1 only, an init as PID 1, gh in the image,
healthchecks, and no service running as root unless it drops privileges for ORCH_AGENT_USER."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import ROOT

COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    """The Dockerfile's instructions of one kind, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.split(None, 1)[:1] == [name]]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    return env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def test_redis_is_never_published_and_requires_a_password() -> None:
    redis = SERVICES["redis"]
    assert "ports" not in redis and "network_mode" not in redis
    assert "--requirepass" in " ".join(redis["command"])
    assert ":?" in env_of(redis)["REDIS_PASSWORD"]  # compose refuses to start without one
    for name, service in SERVICES.items():
        if name != "redis":
            assert "${REDIS_PASSWORD:?" in env_of(service)["ORCH_REDIS_URL"], name


def test_flower_is_opt_in_needs_auth_and_listens_on_loopback_only() -> None:
    flower = SERVICES["flower"]
    assert flower["profiles"] == ["flower"]
    assert ":?" in env_of(flower)["FLOWER_BASIC_AUTH"]
    assert flower["ports"] and all(str(p).startswith("127.0.0.1:") for p in flower["ports"])
    for name, service in SERVICES.items():
        if name != "flower":
            assert "ports" not in service, name


def test_an_init_reaps_orphans_and_gh_is_in_the_image() -> None:
    installs = " ".join(instructions("RUN"))
    assert re.search(r"apt-get install [^&]*\bgh\b", installs) and re.search(r"apt-get install [^&]*\btini\b", installs)
    assert instructions("ENTRYPOINT") == ['["/usr/bin/tini", "--"]']
    for name in ("worker", "beat", "flower"):
        assert SERVICES[name].get("init") is True, name


def test_services_run_unprivileged_unless_they_drop_privileges_for_an_agent_user() -> None:
    users = instructions("USER")
    assert users and users[-1] not in ("root", "0")
    for name, service in SERVICES.items():
        if name == "redis":
            continue
        runs_as_root = str(service.get("user", users[-1])) in ("root", "0")
        assert runs_as_root == bool(env_of(service).get("ORCH_AGENT_USER")), name


def test_worker_and_beat_have_healthchecks_and_beat_writes_where_it_may() -> None:
    for name in ("worker", "beat"):
        check = SERVICES[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["interval"], name
    assert "orchestrate@$$HOSTNAME" in SERVICES["worker"]["healthcheck"]["test"][1]
    beat = SERVICES["beat"]["command"]
    schedule = beat[beat.index("-s") + 1]
    state = env_of(SERVICES["worker"])["ORCH_STATE_DIR"]
    assert Path(schedule).parent == Path(state) and Path(state).name in SERVICES["beat"]["healthcheck"]["test"][1]
