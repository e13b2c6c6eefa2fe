"""Process-wide settings from the ORCH_* environment (SPEC §2)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "orchestrate"


class Settings(BaseSettings):
    """Where Redis, the broker, configs and local state live. Secrets stay in the URLs' env values."""

    model_config = SettingsConfigDict(env_prefix="ORCH_", extra="ignore")

    redis_url: str = "redis://localhost:6379/0"
    broker_url: str | None = None
    result_backend: str | None = None
    config_dir: Path = Path("./orchestrate.d")
    state_dir: Path = _default_state_dir()
    key_prefix: str = "orch"
    # The Redis broker redelivers an unacked task after this long; it must exceed the longest cycle budget.
    visibility_timeout_s: int = 43200

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
