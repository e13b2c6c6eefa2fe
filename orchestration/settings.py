"""Process-wide settings from the ORCH_* environment."""

from __future__ import annotations

import os
import re
import socket
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "orchestrate"


class Settings(BaseSettings):
    """Where Redis, the broker, configs and local state live, and what this host lets configs grant.
    Secrets stay in the URLs' env values."""

    model_config = SettingsConfigDict(env_prefix="ORCH_", extra="ignore")

    # Redis for state, events and locks; also the broker and result backend unless those are set.
    redis_url: str = "redis://localhost:6379/0"
    # Celery broker URL (default: redis_url).
    broker_url: str | None = None
    # Celery result backend URL (default: redis_url).
    result_backend: str | None = None
    # Directory of workspace *.json configs that beat schedules.
    config_dir: Path = Path("./orchestrate.d")
    # Local state: worktrees, caches, `run --local` records.
    state_dir: Path = _default_state_dir()
    # Prefix of every Redis key, so several deployments can share one Redis.
    key_prefix: str = "orch"
    # The Redis broker redelivers an unacked task after this long; it must exceed the longest cycle budget.
    visibility_timeout_s: int = 43200
    # The RabbitMQ server's consumer_timeout (its default: 30 minutes): it closes the channel of a late-ack
    # task that runs longer, and the task is delivered again.
    consumer_timeout_s: int = 1800
    # How often a worker says it is alive; it counts as gone after about four and a half of these, and any
    # live worker then ends the cycles whose worktree is on that host (worker_lost).
    heartbeat_s: float = Field(default=10.0, gt=0, le=60)
    # How often beat reads ORCH_CONFIG_DIR again (added, changed and removed configs, without a restart).
    beat_reload_s: float = Field(default=30.0, gt=0)
    # The least time an `always` step (pr.create's push, http.notify, finish saving the branch) still gets
    # once the cycle has ended, past its deadline perhaps.
    after_end_s: float = Field(default=15.0, gt=0)
    # OS user the agents run as (a separate, unprivileged one); unset: the worker's own user.
    agent_user: str | None = None
    # The host's ceiling on what any config may grant: comma list of `bypass`, `shell`, `network:<host>[:<port>]`.
    allow: str = ""
    # Token that callers of the HTTP API must present.
    serve_token: str | None = None
    # This host's name: its worker consumes `host.<hostname>`, where every step that touches a worktree made
    # here is sent. `orchestrate worker` sets it from the node name's host part (`-n name@host`).
    hostname: str = Field(default_factory=socket.gethostname)

    @field_validator("agent_user", "serve_token")
    @classmethod
    def _empty_is_unset(cls, v: str | None) -> str | None:
        return v or None

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}", v):
            raise ValueError("expected a host name: letters, digits, '.', '_' or '-', starting with a letter or digit")
        return v

    @field_validator("agent_user")
    @classmethod
    def _agent_user(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}", v):
            raise ValueError(
                "expected a POSIX user name: up to 32 letters, digits, '.', '_' or '-', starting with a letter or '_'"
            )
        return v

    @field_validator("allow")
    @classmethod
    def _allow(cls, v: str) -> str:
        if not v.strip():
            return v  # nothing allowed: nothing to parse (and no policy module to load)
        from orchestration.policy import HostPolicy  # policy reads Settings; imported here to avoid a cycle

        HostPolicy.parse(v)  # raises ValueError naming an unknown token
        return v

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if not self.broker_url:
            self.broker_url = self.redis_url
        if not self.result_backend:
            self.result_backend = self.redis_url
        self.state_dir = self.state_dir.expanduser()
        return self

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def broker_is_amqp(self) -> bool:
        return self.broker.startswith(("amqp://", "amqps://", "pyamqp://"))

    @property
    def backend(self) -> str:
        return self.result_backend or self.redis_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def redact_url(url: str) -> str:
    """Hide the password in a broker/redis URL before it is shown anywhere."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    netloc = f"{user}:***@{host}" if user else f":***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
