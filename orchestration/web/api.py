"""The monitor's JSON and event-stream routes, `/metrics` and `/healthz`.

Cancelling and starting a cycle go through `orchestration.control`, the code of `orchestrate cancel` and
`orchestrate run`; Celery is imported the first time a cycle is started here, not to watch.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from orchestration import control
from orchestration.hub import TERMINAL_KINDS
from orchestration.models import CycleRecord
from orchestration.redact import default_redactor
from orchestration.settings import redact_url
from orchestration.web.backend import MAX_STREAMS, Backend, backend_of, error, is_form, query_or_400, recent_records
from orchestration.web.streams import all_events, cycle_events, masked_event
from orchestration.web.views import CycleRow, public_report


class RunRequest(BaseModel):
    """The optional JSON body of `POST /api/workspaces/{id}/run`."""

    model_config = ConfigDict(extra="forbid")

    dry_run: bool = False


def _api_row(record: CycleRecord) -> dict[str, Any]:
    """A cycle in `/api/cycles`: its report, and where it stands (stage, time and cost against the budget)."""
    row = CycleRow.of(record)
    extra = row.model_dump(include={"stage", "elapsed_s", "budget_s", "cost_usd", "max_cost_usd", "queued_at", "live"})
    return {**public_report(record), **extra}


async def api_cycles(request: Request) -> Response:
    query = await query_or_400(request)
    if isinstance(query, JSONResponse):
        return query
    backend = backend_of(request)
    records = await run_in_threadpool(recent_records, backend, query)
    return JSONResponse([_api_row(r) for r in records])


async def api_cycle(request: Request) -> Response:
    cycle_id = request.path_params["cycle_id"]
    record = await run_in_threadpool(backend_of(request).state.get_cycle, cycle_id)
    if record is None:
        return error(404, f"no cycle {cycle_id!r}")
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
    backend = backend_of(request)
    return EventSourceResponse(
        _counted(backend, events),
        ping=backend.cfg.ping_s,
        send_timeout=60,  # a client that takes nothing for a minute is let go (its batch freed)
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def api_cycle_events(request: Request) -> Response:
    backend = backend_of(request)
    cycle_id = request.path_params["cycle_id"]
    after = _last_event_id(request)
    if after is None:
        return error(400, "Last-Event-ID: expected the seq of the last event received")
    if backend.streams >= MAX_STREAMS:
        return error(503, "too many event streams open; try again later")
    key, record = backend.keys.events(cycle_id), backend.keys.cycle(cycle_id)

    async def closed() -> bool:
        """The record is closed, or gone (a stream outlived its record, or was written without one)."""
        return not await backend.aclient.exists(record) or bool(await backend.aclient.hexists(record, "finished_at"))

    newest = await backend.aclient.xrevrange(key, count=1)
    if not newest and not await backend.aclient.exists(record):
        return error(404, f"no cycle {cycle_id!r}")
    if newest and await closed():
        parsed = masked_event(newest[0][1].get(b"event", b""), default_redactor())
        if parsed is not None and parsed[1].get("kind") in TERMINAL_KINDS and int(parsed[1].get("seq", 0)) <= after:
            # Everything was delivered, the end included: 204 tells an EventSource not to reconnect.
            return Response(status_code=204)

    return _sse(request, cycle_events(backend.aclient, key, after, closed, default_redactor()))


async def api_events(request: Request) -> Response:
    backend = backend_of(request)
    if backend.streams >= MAX_STREAMS:
        return error(503, "too many event streams open; try again later")
    return _sse(request, all_events(backend.fanout, default_redactor()))


async def api_cancel(request: Request) -> Response:
    backend = backend_of(request)
    cycle_id = request.path_params["cycle_id"]
    result = await run_in_threadpool(control.request_cancel, backend.services, cycle_id)
    if result.outcome is control.CancelOutcome.NOT_FOUND:
        return error(404, f"no cycle {cycle_id!r}")
    if is_form(request):
        return RedirectResponse(f"/cycles/{cycle_id}", status_code=303)
    status = result.status.value if result.status else None
    if result.outcome is control.CancelOutcome.ALREADY_ENDED:
        return error(409, f"cycle {cycle_id} already ended ({status})", cycle_id=cycle_id, status=status)
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
    backend = backend_of(request)
    workspace = request.path_params["workspace"]
    raw = await request.body()
    try:
        body = RunRequest() if not raw.strip() or is_form(request) else RunRequest.model_validate_json(raw)
    except ValidationError as exc:
        return error(400, f"bad body: {exc.errors()[0]['msg']}")
    cfg, missing = await run_in_threadpool(_find_config, backend.cfg.config_dir, workspace)
    if cfg is None:
        return error(404, missing[0])
    settings_problems = await run_in_threadpool(_problems, cfg)
    if settings_problems:
        return error(422, f"config {workspace!r} cannot run on this host", problems=settings_problems)
    try:
        ctx = await run_in_threadpool(_send_cycle, backend, cfg, body.dry_run)
    except control.SendFailed as exc:
        return error(503, f"cannot reach the Celery broker at {redact_url(backend.cfg.broker_url)}: {exc.error}")
    if is_form(request):
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
    health = await run_in_threadpool(_health, backend_of(request))
    return JSONResponse(health, status_code=200 if health["ok"] else 503)
