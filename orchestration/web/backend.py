"""What every route of the monitor works with: its settings, its Redis clients, and the small helpers they
share (errors as JSON, the cycles query).

Nothing is kept here that Redis does not hold: the records come from `RedisState`, the events from the hub's
streams and channel. Blocking Redis calls (the records) run in Starlette's thread pool; the event streams
use an asyncio client, since a client following a cycle waits in Redis, not in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from orchestration.hub import RedisHub
from orchestration.keys import Keys
from orchestration.models import CycleRecord, Status
from orchestration.redact import default_redactor
from orchestration.services import Services, patience
from orchestration.settings import Settings
from orchestration.state import RedisState
from orchestration.web.streams import Fanout

MAX_LIMIT = 500
MAX_STREAMS = 200  # SSE clients at once: each holds a Redis connection while it waits


class ServeConfig(BaseModel):
    """What the app needs of the environment (from `Settings`, or given by a test)."""

    model_config = ConfigDict(frozen=True)

    redis_url: str
    key_prefix: str
    config_dir: Path
    state_dir: Path  # what the error path of a cycle that could not be sent may look at (its worktrees)
    broker_url: str
    token: SecretStr | None = None
    ping_s: float = 15.0  # SSE heartbeat: keeps proxies from closing a quiet stream

    @classmethod
    def from_settings(cls, settings: Settings, *, auth: bool) -> ServeConfig:
        token = settings.serve_token if auth else None
        return cls(
            redis_url=settings.redis_url,
            key_prefix=settings.key_prefix,
            config_dir=settings.config_dir,
            state_dir=settings.state_dir,
            broker_url=settings.broker,
            token=SecretStr(token) if token else None,
        )


@dataclass
class Backend:
    """The Redis clients and what is built on them, made once per app."""

    cfg: ServeConfig
    client: Any  # redis.Redis, for the records (in the thread pool)
    aclient: Any  # redis.asyncio.Redis, for the event streams
    state: RedisState
    keys: Keys
    fanout: Fanout
    streams: int = 0

    @classmethod
    def connect(cls, cfg: ServeConfig) -> Backend:
        import redis
        import redis.asyncio

        client = redis.Redis.from_url(
            cfg.redis_url, socket_connect_timeout=3, socket_timeout=10, retry=patience(2), health_check_interval=30
        )
        # No read timeout below the XREAD wait (5 s): a following client waits in Redis.
        aclient = redis.asyncio.Redis.from_url(
            cfg.redis_url, socket_connect_timeout=3, socket_timeout=60, health_check_interval=30
        )
        return cls.of(cfg, client, aclient)

    @classmethod
    def of(cls, cfg: ServeConfig, client: Any, aclient: Any) -> Backend:
        keys = Keys(cfg.key_prefix)
        return cls(cfg, client, aclient, RedisState(client, cfg.key_prefix), keys, Fanout(aclient, keys.updates))

    @property
    def services(self) -> Services:
        return Services(state=self.state, hub=RedisHub(self.client, self.cfg.key_prefix), state_dir=self.cfg.state_dir)

    async def close(self) -> None:
        await self.fanout.close()
        await self.aclient.aclose()
        self.client.close()


# -- helpers ---------------------------------------------------------------------------------------


def backend_of(request: Request) -> Backend:
    """The app's backend, from inside a route."""
    backend: Backend = request.app.state.backend
    return backend


def error(code: int, message: str, **extra: Any) -> JSONResponse:
    """A JSON error; its message masked (it may quote an exception, a URL)."""
    return JSONResponse({"error": default_redactor().text(message), **extra}, status_code=code)


def is_form(request: Request) -> bool:
    """A plain HTML form post (a page without script): answered with a redirect to a page, not JSON."""
    return request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded", "multipart/"))


class Query(BaseModel):
    """`?workspace=`, `?status=`, `?limit=` of the cycles table and `/api/cycles`."""

    model_config = ConfigDict(extra="ignore")

    workspace: str | None = None
    status: Status | None = None
    limit: int = 20

    @classmethod
    def of(cls, request: Request, default_limit: int = 20) -> Query:
        params = {k: v for k, v in request.query_params.items() if v != ""}
        query = cls.model_validate({"limit": default_limit, **params})
        if not 1 <= query.limit <= MAX_LIMIT:
            raise ValueError(f"limit: between 1 and {MAX_LIMIT}")
        return query

    def text(self) -> str:
        params = {"workspace": self.workspace, "status": self.status.value if self.status else None}
        given = {k: v for k, v in params.items() if v}
        return "?" + urlencode({**given, "limit": self.limit}) if given or self.limit != 20 else ""


def recent_records(backend: Backend, query: Query) -> list[CycleRecord]:
    """The records a cycles query asks for, newest first (a status filter looks further back)."""
    if query.status is None:
        return backend.state.recent_cycles(query.workspace, query.limit)
    wider = backend.state.recent_cycles(query.workspace, min(1000, max(200, query.limit * 5)))
    return [r for r in wider if r.status is query.status][: query.limit]


async def query_or_400(request: Request, default_limit: int = 20) -> Query | JSONResponse:
    try:
        return Query.of(request, default_limit)
    except (ValidationError, ValueError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else None
        text = f"{'.'.join(map(str, first['loc']))}: {first['msg']}" if first else str(exc)
        return error(400, f"bad query: {text}")
