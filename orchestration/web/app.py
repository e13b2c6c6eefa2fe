"""The monitor's ASGI app: the routes of `orchestrate serve`, on the same Redis state and hub as the CLI.

Nothing is kept here that Redis does not hold: the records come from `RedisState`, the events from the
hub's streams and channel, starting a cycle and cancelling one go through `orchestration.control` as the
CLI's `run` and `cancel` do. Blocking Redis calls (the records) run in Starlette's thread pool; the event
streams use an asyncio client, since a client following a cycle waits in Redis, not in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestration import control
from orchestration.hub import TERMINAL_KINDS, RedisHub
from orchestration.keys import Keys
from orchestration.models import CycleRecord, Status
from orchestration.redact import Redactor, default_redactor
from orchestration.services import Services, patience
from orchestration.settings import Settings, redact_url
from orchestration.state import RedisState
from orchestration.web import pages
from orchestration.web.auth import COOKIE_MAX_AGE_S, COOKIE_NAME, Gate, Verdict, same_origin
from orchestration.web.streams import Fanout, all_events, cycle_events, masked_event
from orchestration.web.views import CycleRow, public_report

log = logging.getLogger(__name__)

MAX_LIMIT = 500
MAX_STREAMS = 200  # SSE clients at once: each holds a Redis connection while it waits
SIGNIN_BODY_MAX = 8192
WRONG_TOKEN_DELAY_S = 0.5  # a wrong sign-in answers this much later: guessing online is slow


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


class RunRequest(BaseModel):
    """The optional JSON body of `POST /api/workspaces/{id}/run`."""

    model_config = ConfigDict(extra="forbid")

    dry_run: bool = False


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


# -- middleware ------------------------------------------------------------------------------------


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _wants_html(scope: Scope) -> bool:
    return "text/html" in (_header(scope, b"accept") or "") and scope.get("method") in ("GET", "HEAD")


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


class SecurityHeaders:
    """Adds the Content-Security-Policy and its companions to every response, and `no-store` to all but the
    event streams (which set their own)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = {**SECURITY_HEADERS, "content-security-policy": pages.policy(), "cache-control": "no-store"}
                headers += [(k.encode(), v.encode()) for k, v in extra.items() if k.encode() not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class Authenticate:
    """The gate of `auth.Gate` in front of every route: 401 without (or with wrong) credentials, 403 for a
    cookie POST from another origin."""

    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        verdict = self.gate.check(
            scope["method"],
            scope["path"],
            authorization=_header(scope, b"authorization"),
            cookie=_cookie(scope, COOKIE_NAME),
            origin=_header(scope, b"origin"),
            host=_header(scope, b"host"),
        )
        if verdict is Verdict.ALLOW:
            await self.app(scope, receive, send)
            return
        response: Response
        if verdict is Verdict.UNAUTHORIZED:
            headers = {"www-authenticate": 'Bearer realm="orchestrate"'}
            if _wants_html(scope):
                response = HTMLResponse(pages.unauthorized_page(), status_code=401, headers=headers)
            else:
                response = JSONResponse({"error": "unauthorized: a bearer token or a session is needed"}, 401, headers)
        else:
            response = JSONResponse({"error": "forbidden: a cross-site request"}, status_code=403)
        await response(scope, receive, send)


# -- helpers ---------------------------------------------------------------------------------------


def _backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


def _redactor() -> Redactor:
    return default_redactor()


def _error(code: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": default_redactor().text(message), **extra}, status_code=code)


def _is_form(request: Request) -> bool:
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


def _records(backend: Backend, query: Query) -> list[CycleRecord]:
    if query.status is None:
        return backend.state.recent_cycles(query.workspace, query.limit)
    wider = backend.state.recent_cycles(query.workspace, min(1000, max(200, query.limit * 5)))
    return [r for r in wider if r.status is query.status][: query.limit]


def _api_row(record: CycleRecord) -> dict[str, Any]:
    row = CycleRow.of(record)
    extra = row.model_dump(include={"stage", "elapsed_s", "budget_s", "cost_usd", "max_cost_usd", "queued_at", "live"})
    return {**public_report(record), **extra}


async def _query_or_400(request: Request, default_limit: int = 20) -> Query | JSONResponse:
    try:
        return Query.of(request, default_limit)
    except (ValidationError, ValueError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else None
        text = f"{'.'.join(map(str, first['loc']))}: {first['msg']}" if first else str(exc)
        return _error(400, f"bad query: {text}")


# -- pages -----------------------------------------------------------------------------------------


async def index(request: Request) -> Response:
    query = await _query_or_400(request, default_limit=50)
    if isinstance(query, JSONResponse):
        return query
    backend = _backend(request)
    records = await run_in_threadpool(_records, backend, query)
    rows = [(CycleRow.of(r), _pr_number(r)) for r in records]
    workspaces = await run_in_threadpool(_workspace_ids, backend.cfg.config_dir)
    return HTMLResponse(pages.cycles_page(rows, query.text(), workspaces))


def _workspace_ids(directory: Path) -> list[str]:
    """The ids of the valid configs in ORCH_CONFIG_DIR: the workspaces a cycle can be started for."""
    from orchestration.config import load_config_dir

    good, _bad = load_config_dir(directory)
    return sorted(cfg.id for _path, cfg in good)


def _pr_number(record: CycleRecord) -> int | None:
    pr = record.summary().pr
    return pr.number if pr else None


async def cycle_view(request: Request) -> Response:
    backend = _backend(request)
    cycle_id = request.path_params["cycle_id"]
    record = await run_in_threadpool(backend.state.get_cycle, cycle_id)
    if record is None:
        return HTMLResponse(pages.message_page("No such cycle", f"There is no cycle {cycle_id!r}."), status_code=404)
    rows = await backend.aclient.xrevrange(backend.keys.events(cycle_id), count=pages.LOG_ROWS + 1)
    events = []
    for _, fields in reversed(rows[: pages.LOG_ROWS]):
        parsed = masked_event(fields.get(b"event", b""), _redactor())
        if parsed is not None:
            events.append(parsed[1])
    page = pages.cycle_page(CycleRow.of(record), public_report(record), events, more=len(rows) > pages.LOG_ROWS)
    return HTMLResponse(page)


async def signin_form(request: Request) -> Response:
    return HTMLResponse(pages.signin_page())


async def signin(request: Request) -> Response:
    gate: Gate = request.app.state.gate
    origin = request.headers.get("origin")
    if origin is not None and not same_origin(origin, request.headers.get("host")):
        return _error(403, "forbidden: a cross-site sign-in")
    if gate.token is None:
        return RedirectResponse("/", status_code=303)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > SIGNIN_BODY_MAX:
            return _error(413, "the sign-in form is too large")
    given = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0].strip()
    if not gate.signs_in(given):
        await asyncio.sleep(WRONG_TOKEN_DELAY_S)
        return HTMLResponse(pages.signin_page("That is not the token."), status_code=401)
    response = RedirectResponse("/", status_code=303)
    cookie = gate.cookie_value
    assert cookie is not None
    response.set_cookie(
        COOKIE_NAME,
        cookie,
        max_age=COOKIE_MAX_AGE_S,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


# -- API -------------------------------------------------------------------------------------------


async def api_cycles(request: Request) -> Response:
    query = await _query_or_400(request)
    if isinstance(query, JSONResponse):
        return query
    backend = _backend(request)
    records = await run_in_threadpool(_records, backend, query)
    return JSONResponse([_api_row(r) for r in records])


async def api_cycle(request: Request) -> Response:
    cycle_id = request.path_params["cycle_id"]
    record = await run_in_threadpool(_backend(request).state.get_cycle, cycle_id)
    if record is None:
        return _error(404, f"no cycle {cycle_id!r}")
    return JSONResponse(public_report(record))


def _last_event_id(request: Request) -> int | None:
    raw = request.headers.get("last-event-id", "").strip()
    if not raw:
        return 0
    return int(raw) if raw.isdigit() else None


@contextlib.asynccontextmanager
async def _stream_slot(backend: Backend) -> AsyncIterator[bool]:
    if backend.streams >= MAX_STREAMS:
        yield False
        return
    backend.streams += 1
    try:
        yield True
    finally:
        backend.streams -= 1


def _counted(backend: Backend, events: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The stream, holding one of the server's stream slots while it runs."""

    async def run() -> AsyncIterator[Any]:
        async with _stream_slot(backend) as ok:
            if not ok:
                return
            async for item in events:
                yield item

    return run()


def _sse(request: Request, events: AsyncIterator[Any]) -> EventSourceResponse:
    backend = _backend(request)
    return EventSourceResponse(
        _counted(backend, events),
        ping=backend.cfg.ping_s,
        send_timeout=60,  # a client that takes nothing for a minute is let go (its batch freed)
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def api_cycle_events(request: Request) -> Response:
    backend = _backend(request)
    cycle_id = request.path_params["cycle_id"]
    after = _last_event_id(request)
    if after is None:
        return _error(400, "Last-Event-ID: expected the seq of the last event received")
    if backend.streams >= MAX_STREAMS:
        return _error(503, "too many event streams open; try again later")
    key, record = backend.keys.events(cycle_id), backend.keys.cycle(cycle_id)

    async def closed() -> bool:
        """The record is closed, or gone (a stream outlived its record, or was written without one)."""
        return not await backend.aclient.exists(record) or bool(await backend.aclient.hexists(record, "finished_at"))

    newest = await backend.aclient.xrevrange(key, count=1)
    if not newest and not await backend.aclient.exists(record):
        return _error(404, f"no cycle {cycle_id!r}")
    if newest and await closed():
        parsed = masked_event(newest[0][1].get(b"event", b""), _redactor())
        if parsed is not None and parsed[1].get("kind") in TERMINAL_KINDS and int(parsed[1].get("seq", 0)) <= after:
            # Everything was delivered, the end included: 204 tells an EventSource not to reconnect.
            return Response(status_code=204)

    return _sse(request, cycle_events(backend.aclient, key, after, closed, _redactor()))


async def api_events(request: Request) -> Response:
    backend = _backend(request)
    if backend.streams >= MAX_STREAMS:
        return _error(503, "too many event streams open; try again later")
    return _sse(request, all_events(backend.fanout, _redactor()))


async def api_cancel(request: Request) -> Response:
    backend = _backend(request)
    cycle_id = request.path_params["cycle_id"]
    result = await run_in_threadpool(control.request_cancel, backend.services, cycle_id)
    if result.outcome is control.CancelOutcome.NOT_FOUND:
        return _error(404, f"no cycle {cycle_id!r}")
    if _is_form(request):
        return RedirectResponse(f"/cycles/{cycle_id}", status_code=303)
    status = result.status.value if result.status else None
    if result.outcome is control.CancelOutcome.ALREADY_ENDED:
        return _error(409, f"cycle {cycle_id} already ended ({status})", cycle_id=cycle_id, status=status)
    return JSONResponse({"cycle_id": cycle_id, "cancel": "requested", "status": status}, status_code=202)


_broker_bounded = threading.Lock()
_bounded = False


def _send_cycle(backend: Backend, cfg: Any, dry_run: bool) -> Any:
    """`control.start_cycle` with Celery's `send_cycle`, as `orchestrate run` sends a cycle (imported here,
    the first time a cycle is started: the monitor does not load Celery to watch)."""
    global _bounded
    from tasks.app import bound_broker_calls
    from tasks.cycle import send_cycle

    with _broker_bounded:
        if not _bounded:
            bound_broker_calls()  # a broker that takes the connection but never answers must not hang the request
            _bounded = True
    return control.start_cycle(backend.services, cfg, send_cycle, dry_run=dry_run)


def _find_config(directory: Path, workspace: str) -> tuple[Any, list[str]]:
    from orchestration.config import load_config_dir

    good, _bad = load_config_dir(directory)
    for _path, cfg in good:
        if cfg.id == workspace:
            return cfg, []
    return None, [f"no valid config with id {workspace!r} in ORCH_CONFIG_DIR"]


async def api_run(request: Request) -> Response:
    backend = _backend(request)
    workspace = request.path_params["workspace"]
    raw = await request.body()
    try:
        body = RunRequest() if not raw.strip() or _is_form(request) else RunRequest.model_validate_json(raw)
    except ValidationError as exc:
        return _error(400, f"bad body: {exc.errors()[0]['msg']}")
    cfg, missing = await run_in_threadpool(_find_config, backend.cfg.config_dir, workspace)
    if cfg is None:
        return _error(404, missing[0])
    settings_problems = await run_in_threadpool(_problems, cfg)
    if settings_problems:
        return _error(422, f"config {workspace!r} cannot run on this host", problems=settings_problems)
    try:
        ctx = await run_in_threadpool(_send_cycle, backend, cfg, body.dry_run)
    except control.SendFailed as exc:
        return _error(503, f"cannot reach the Celery broker at {redact_url(backend.cfg.broker_url)}: {exc.error}")
    if _is_form(request):
        return RedirectResponse(f"/cycles/{ctx.cycle_id}", status_code=303)
    body_out = {
        "cycle_id": ctx.cycle_id,
        "workspace": ctx.workspace,
        "status": "queued",
        "url": f"/cycles/{ctx.cycle_id}",
    }
    return JSONResponse(body_out, status_code=202)


def _problems(cfg: Any) -> list[str]:
    from orchestration.settings import get_settings

    return control.config_problems_here(cfg, get_settings())


async def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    text = await run_in_threadpool(generate_latest, request.app.state.registry)
    return Response(text, media_type=CONTENT_TYPE_LATEST)


def _health(backend: Backend) -> dict[str, Any]:
    try:
        backend.client.ping()
    except Exception:
        return {"ok": False, "redis": False, "workers": None}
    return {"ok": True, "redis": True, "workers": len(backend.state.workers())}


async def healthz(request: Request) -> Response:
    health = await run_in_threadpool(_health, _backend(request))
    return JSONResponse(health, status_code=200 if health["ok"] else 503)


# -- the app ---------------------------------------------------------------------------------------


def create_app(cfg: ServeConfig, backend: Backend | None = None) -> Starlette:
    """The monitor for one deployment (its Redis, key prefix, config directory and token); `backend` gives
    clients of one's own (tests: fakeredis)."""
    from prometheus_client import CollectorRegistry

    from orchestration.web.metrics import StateCollector

    backend = backend or Backend.connect(cfg)
    gate = Gate(cfg.token.get_secret_value() if cfg.token else None)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(backend.state, broker_is_state=cfg.broker_url == cfg.redis_url))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await backend.close()

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/cycles/{cycle_id}", cycle_view, methods=["GET"]),
        Route("/api/cycles", api_cycles, methods=["GET"]),
        Route("/api/cycles/{cycle_id}", api_cycle, methods=["GET"]),
        Route("/api/cycles/{cycle_id}/events", api_cycle_events, methods=["GET"]),
        Route("/api/events", api_events, methods=["GET"]),
        Route("/api/cycles/{cycle_id}/cancel", api_cancel, methods=["POST"]),
        Route("/api/workspaces/{workspace}/run", api_run, methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/signin", signin_form, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
    ]
    middleware = [Middleware(SecurityHeaders), Middleware(Authenticate, gate=gate)]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.backend = backend
    app.state.gate = gate
    app.state.registry = registry
    return app
