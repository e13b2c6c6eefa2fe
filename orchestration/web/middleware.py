"""The monitor's ASGI middleware: the security headers of every response, and the gate (`auth.Gate`) in
front of every route."""

from __future__ import annotations

from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestration.web import pages
from orchestration.web.auth import COOKIE_NAME, Gate, Verdict


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
