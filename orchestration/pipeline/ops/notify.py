"""`http.notify`: POST a JSON object to a webhook. The URL's host (`host` or `host:port`) must be in
`permissions.network` and allowed by this host's ORCH_ALLOW, checked on the substituted URL before anything
is sent. Bounded timeout, retries with backoff on connection errors, 429 and 5xx; a redirect is followed only
to the same scheme, host and port; header values are never logged, shown or put in events."""

from __future__ import annotations

import http.client
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson
from pydantic import BaseModel, Field, field_validator

from orchestration.config import WorkspaceConfig, parse_network_entry
from orchestration.pipeline.expr import has_refs
from orchestration.pipeline.registry import Args, Operation, StepDenied, StepFailed, StepRun, register

MAX_REDIRECTS = 3
BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0
USER_AGENT = "orchestrate-notify/1"
MAX_BODY = 1024 * 1024


def host_port(url: str) -> tuple[str, int | None, str]:
    """(lower-case host, port or None, scheme) of an http(s) URL; ValueError when it is not one."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("expected an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if parts.username or parts.password:
        raise ValueError("credentials in the URL are not allowed (use headers with ${env.NAME})")
    return parts.hostname.lower().rstrip("."), parts.port, parts.scheme


def _effective_port(port: int | None, scheme: str) -> int:
    return port or (443 if scheme == "https" else 80)


def granted(url: str, network: list[str]) -> bool:
    """Whether `permissions.network` names the URL's host: `host` (any port) or `host:port`."""
    host, port, scheme = host_port(url)
    real_port = _effective_port(port, scheme)
    for entry in network:
        h, p = parse_network_entry(entry)
        if h == host and (p is None or p == real_port):
            return True
    return False


def shown_url(url: str) -> str:
    """scheme://host[:port]/path: never the query (tokens live there)."""
    p = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((p.scheme, p.netloc.rpartition("@")[2], p.path, "", ""))


class NotifyArgs(Args):
    url: str = Field(description="http(s) URL; its host must be in permissions.network")
    json_: dict[str, Any] = Field(default_factory=dict, alias="json", description="the JSON object to POST")
    headers: dict[str, str] = Field(default_factory=dict, description="values may use ${env.NAME}; never logged")
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    retries: int = Field(default=3, ge=0, le=10)

    model_config = Args.model_config | {"populate_by_name": True}

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if has_refs(v):
            return v  # checked once substituted
        host_port(v)
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", k):
                raise ValueError(f"{k!r} is not a header name")
            if any(c in val for c in "\r\n\0"):
                raise ValueError(f"the value of {k} holds a line break")
        return v


class NotifyOutput(BaseModel):
    status_code: int | None = None
    ok: bool = False


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to the same scheme, host and port; anything else stops with its 3xx."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        old = urllib.parse.urlsplit(req.full_url)
        new = urllib.parse.urlsplit(newurl)
        same = (old.scheme, old.hostname, old.port) == (new.scheme, new.hostname, new.port)
        if not same or code not in (307, 308):
            return None  # 301/302/303 would turn the POST into a GET: report the status instead
        return urllib.request.Request(newurl, data=req.data, headers=dict(req.header_items()), method=req.get_method())


@register
class Notify(Operation[NotifyArgs, NotifyOutput]):
    name = "http.notify"
    stage = "notify"
    summary = "POST a JSON object to a webhook (its host must be in permissions.network)"
    Args = NotifyArgs
    Output = NotifyOutput
    always = True  # a webhook hears how a cycle ended, also when it failed, timed out or was cancelled
    default_limit_s = 120

    def needs(self, args: dict[str, Any], cfg: WorkspaceConfig, policy: Any) -> list[tuple[str, str]]:
        url = args.get("url")
        if not isinstance(url, str):
            return []
        if has_refs(url):
            # The host may be literal even when the path is substituted; when it is not, it is checked once
            # known, on the host that sends.
            scheme, _, rest = url.partition("://")
            netloc = rest.split("/", 1)[0]
            if not rest or "$" in scheme or "$" in netloc:
                return [] if cfg.permissions.network else [("url", "needs permissions.network (it grants no host)")]
            url = f"{scheme}://{netloc}/"
        try:
            host, port, scheme = host_port(url)
        except ValueError as exc:
            return [("url", str(exc))]
        problems = []
        if not granted(url, cfg.permissions.network):
            entry = host if port is None else f"{host}:{port}"
            problems.append(("url", f"needs {entry!r} in permissions.network {cfg.permissions.network}"))
        if policy is not None and not policy.allows_network(host, _effective_port(port, scheme)):
            problems.append(("url", f'this host does not allow {host} (ORCH_ALLOW lacks "network:{host}")'))
        return problems

    def uses(self, args: dict[str, Any], cfg: WorkspaceConfig | None) -> list[str]:
        url = args.get("url")
        try:
            host, port, _ = host_port(url) if isinstance(url, str) else ("?", None, "")
        except ValueError:
            host, port = "?", None
        return [f"network: {host}" + (f":{port}" if port else "")]

    def limit_s(self, step: Any, cfg: WorkspaceConfig) -> int:
        w = step.with_
        timeout = w.get("timeout_s") if isinstance(w.get("timeout_s"), (int, float)) else 10
        retries = w.get("retries") if isinstance(w.get("retries"), int) else 3
        return int(min(cfg.budget.cycle_s, (timeout + MAX_BACKOFF_S) * (retries + 1) * (MAX_REDIRECTS + 1) + 15))

    def run(self, step: StepRun, args: NotifyArgs) -> NotifyOutput:
        url = args.url
        try:
            host_port(url)
        except ValueError as exc:
            raise StepDenied(f"url: {exc}") from None
        if any(c.isspace() or not c.isprintable() for c in url):
            # http.client would refuse it with an error quoting the URL, query (tokens) and all.
            raise StepFailed("url: holds whitespace or a control character once substituted (the URL is not shown)")
        body = orjson.dumps(args.json_)
        if len(body) > MAX_BODY:
            body = orjson.dumps({"error": "payload over 1 MiB left out", "cycle_id": step.ctx.cycle_id})
        headers = {"User-Agent": USER_AGENT, **args.headers, "Content-Type": "application/json"}
        opener = urllib.request.build_opener(_SameHostRedirects)
        status: int | None = None
        error = ""
        attempts = 0
        for attempt in range(args.retries + 1):
            attempts = attempt + 1
            timeout = max(0.5, min(args.timeout_s, step.deadline - time.time()))
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with opener.open(request, timeout=timeout) as resp:
                    status = resp.status
                    resp.read(65536)
                error = ""
            except urllib.error.HTTPError as exc:
                status, error = exc.code, f"HTTP {exc.code}"
                exc.close()
            except (urllib.error.URLError, OSError) as exc:
                status, error = None, type(exc).__name__ + ": " + str(getattr(exc, "reason", exc))[:200]
            except (ValueError, http.client.HTTPException) as exc:
                # Their messages may quote the URL (its query) or a header value: only the kind is shown.
                status, error = None, type(exc).__name__
            transient = status is None or status == 429 or status >= 500
            if not transient or attempt == args.retries:
                break
            delay = min(MAX_BACKOFF_S, BACKOFF_S * 2**attempt)
            if time.time() + delay >= step.deadline:
                break
            time.sleep(delay)
        ok = status is not None and 200 <= status < 300
        step.emit(
            "notify.sent",
            {"url": shown_url(url), "status_code": status, "ok": ok, "attempts": attempts, "error": error or None},
        )
        if not ok:
            step.ctx.steps[step.index].status = step.ctx.steps[step.index].status.FAILED
            step.ctx.steps[step.index].reason = error or f"HTTP {status}"
        return NotifyOutput(status_code=status, ok=ok)
