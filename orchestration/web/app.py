"""The monitor's ASGI app: its pages (the cycles table, one cycle, signing in) and the routes of
`orchestrate serve` put together (the JSON and event-stream routes are in `api.py`), on the same Redis state
and hub as the CLI."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from orchestration.models import CycleRecord
from orchestration.redact import default_redactor
from orchestration.web import api, pages
from orchestration.web.auth import COOKIE_MAX_AGE_S, COOKIE_NAME, Gate, same_origin
from orchestration.web.backend import Backend, ServeConfig, backend_of, error, query_or_400, recent_records
from orchestration.web.middleware import Authenticate, SecurityHeaders
from orchestration.web.streams import masked_event
from orchestration.web.views import CycleRow, public_report

__all__ = ["Backend", "ServeConfig", "create_app"]

SIGNIN_BODY_MAX = 8192
WRONG_TOKEN_DELAY_S = 0.5  # a wrong sign-in answers this much later: guessing online is slow


async def index(request: Request) -> Response:
    query = await query_or_400(request, default_limit=50)
    if isinstance(query, JSONResponse):
        return query
    backend = backend_of(request)
    records = await run_in_threadpool(recent_records, backend, query)
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
    backend = backend_of(request)
    cycle_id = request.path_params["cycle_id"]
    record = await run_in_threadpool(backend.state.get_cycle, cycle_id)
    if record is None:
        return HTMLResponse(pages.message_page("No such cycle", f"There is no cycle {cycle_id!r}."), status_code=404)
    rows = await backend.aclient.xrevrange(backend.keys.events(cycle_id), count=pages.LOG_ROWS + 1)
    events = []
    for _, fields in reversed(rows[: pages.LOG_ROWS]):
        parsed = masked_event(fields.get(b"event", b""), default_redactor())
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
        return error(403, "forbidden: a cross-site sign-in")
    if gate.token is None:
        return RedirectResponse("/", status_code=303)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > SIGNIN_BODY_MAX:
            return error(413, "the sign-in form is too large")
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
        Route("/api/cycles", api.api_cycles, methods=["GET"]),
        Route("/api/cycles/{cycle_id}", api.api_cycle, methods=["GET"]),
        Route("/api/cycles/{cycle_id}/events", api.api_cycle_events, methods=["GET"]),
        Route("/api/events", api.api_events, methods=["GET"]),
        Route("/api/cycles/{cycle_id}/cancel", api.api_cancel, methods=["POST"]),
        Route("/api/workspaces/{workspace}/run", api.api_run, methods=["POST"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/signin", signin_form, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
    ]
    middleware = [Middleware(SecurityHeaders), Middleware(Authenticate, gate=gate)]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.backend = backend
    app.state.gate = gate
    app.state.registry = registry
    return app
