"""The web monitor without servers: who gets in (token, derived cookie, Origin), what the pages escape, the
CSP that keeps other scripts out, and the live channel's bounded buffer."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from orchestration.hub import RedisHub
from orchestration.models import CycleContext, CycleRecord, Decision, Status
from orchestration.redact import Redactor
from orchestration.state import RedisState
from orchestration.web import auth, pages
from orchestration.web.app import Backend, ServeConfig, create_app
from orchestration.web.auth import COOKIE_NAME, Gate, Verdict, same_origin, session_cookie
from orchestration.web.streams import BATCH, Subscriber, all_events, cycle_events

TOKEN = "unit-test-token-0123456789"
HOSTILE = "<script>alert(1)</script>"

# -- auth --------------------------------------------------------------------------------------------


def test_the_cookie_is_an_hmac_of_the_token_never_the_token() -> None:
    cookie = session_cookie(TOKEN)
    assert cookie == hmac.new(TOKEN.encode(), b"orchestrate serve session v1", hashlib.sha256).hexdigest()
    assert TOKEN not in cookie and re.fullmatch(r"[0-9a-f]{64}", cookie)
    assert session_cookie(TOKEN) == cookie and session_cookie(TOKEN + "x") != cookie


def test_every_secret_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    gate = Gate(TOKEN)
    common = {"cookie": None, "origin": None, "host": "h"}
    assert gate.check("GET", "/", authorization=f"Bearer {TOKEN}", **common) is Verdict.ALLOW
    assert gate.check("GET", "/", authorization="Bearer nope", **common) is Verdict.UNAUTHORIZED
    no_bearer = {"authorization": None, "origin": None, "host": "h"}
    assert gate.check("GET", "/", cookie=session_cookie(TOKEN), **no_bearer) is Verdict.ALLOW
    assert gate.check("GET", "/", cookie="0" * 64, **no_bearer) is Verdict.UNAUTHORIZED
    assert gate.signs_in(TOKEN) and not gate.signs_in("nope")
    assert len(calls) == 6
    assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in calls)


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://127.0.0.1:8700", "127.0.0.1:8700", True),
        ("https://Monitor.Example.org", "monitor.example.org", True),  # TLS at the proxy, Host passed on
        ("http://127.0.0.1:8701", "127.0.0.1:8700", False),
        ("https://evil.example", "monitor.example.org", False),
        ("https://monitor.example.org.evil.example", "monitor.example.org", False),
        ("null", "monitor.example.org", False),
        (None, "monitor.example.org", False),
        ("https://monitor.example.org/path", "monitor.example.org", False),
        ("javascript://monitor.example.org", "monitor.example.org", False),
        ("http://[::1]:8700", "[::1]:8700", True),
    ],
)
def test_same_origin(origin: str | None, host: str, same: bool) -> None:
    assert same_origin(origin, host) is same


def _verdict(gate: Gate, method: str, path: str = "/api/cycles/x/cancel", **headers: str | None) -> Verdict:
    given: dict[str, Any] = {"authorization": None, "cookie": None, "origin": None, "host": "mon.example:8700"}
    given.update(headers)
    return gate.check(method, path, **given)


def test_a_cookie_post_needs_this_origin_a_bearer_post_does_not() -> None:
    gate = Gate(TOKEN)
    cookie = session_cookie(TOKEN)
    assert _verdict(gate, "POST", cookie=cookie) is Verdict.FORBIDDEN
    assert _verdict(gate, "POST", cookie=cookie, origin="https://evil.example") is Verdict.FORBIDDEN
    assert _verdict(gate, "POST", cookie=cookie, origin="http://mon.example:8700") is Verdict.ALLOW
    assert _verdict(gate, "GET", path="/", cookie=cookie) is Verdict.ALLOW
    assert _verdict(gate, "POST", authorization=f"Bearer {TOKEN}") is Verdict.ALLOW
    assert _verdict(gate, "POST", cookie=TOKEN, origin="http://mon.example:8700") is Verdict.UNAUTHORIZED
    for path in ("/healthz", "/signin"):
        assert _verdict(gate, "GET", path=path) is Verdict.ALLOW
    assert _verdict(gate, "GET", path="/metrics") is Verdict.UNAUTHORIZED


def test_without_auth_only_loopback_hosts_and_no_foreign_origin() -> None:
    gate = Gate(None)
    assert _verdict(gate, "POST", host="127.0.0.1:8700") is Verdict.ALLOW
    assert _verdict(gate, "POST", host="localhost:8700", origin="http://localhost:8700") is Verdict.ALLOW
    assert _verdict(gate, "POST", host="127.0.0.1:8700", origin="https://evil.example") is Verdict.FORBIDDEN
    assert _verdict(gate, "GET", path="/", host="evil.example:8700") is Verdict.FORBIDDEN  # DNS rebinding
    assert _verdict(gate, "GET", path="/", host="[::1]:8700") is Verdict.ALLOW


# -- the app on fakeredis ----------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, RedisHub, RedisState]]:
    monkeypatch.setenv("ORCH_SERVE_TOKEN", TOKEN)  # the server's own secret: masked wherever it shows up
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    cfg = ServeConfig(
        redis_url="redis://unused",
        key_prefix="u",
        config_dir=tmp_path,
        state_dir=tmp_path,
        broker_url="redis://unused",
        token=SecretStr(TOKEN),
    )
    backend = Backend.of(cfg, client, fakeredis.FakeAsyncRedis(server=server))
    with TestClient(create_app(cfg, backend), headers={"Authorization": f"Bearer {TOKEN}"}) as tc:
        yield tc, RedisHub(client, "u"), backend.state


def _record(state: RedisState, cycle_id: str, title: str) -> None:
    decision = Decision(
        task="t", title=title, agent="claude-code", rationale=f"because {HOSTILE}", confidence=0.5, op_hash="h"
    )
    ctx = CycleContext(
        cycle_id=cycle_id,
        workspace="ws",
        config={"budget": {"cycle_s": 600, "max_cost_usd": 3.0}},
        queued_at="2026-01-01T00:00:00.000Z",
        started_at="2026-01-01T00:00:01.000Z",
        status=Status.RUNNING,
        decision=decision,
    )
    state.save_cycle(CycleRecord(ctx=ctx))


def _inline(tag: str, html: str) -> list[str]:
    return re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)


def _sha(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def test_agent_text_renders_as_text_and_only_the_page_script_may_run(served: Any) -> None:
    tc, hub, state = served
    _record(state, "c1", f"fix <b>it</b> {HOSTILE}")
    hub.emit("c1", "ws", "execute", "agent.message", {"text": HOSTILE})
    hub.emit("c1", "ws", "execute", "agent.command", {"command": f"echo {TOKEN}"})
    r = tc.get("/cycles/c1")
    assert r.status_code == 200
    html = r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "alert(1)</script>" not in html and "<b>it</b>" not in html
    scripts = _inline("script", html)
    assert len(scripts) == 1 and scripts[0] == pages.asset("app.js")  # ours, and nothing else
    csp = r.headers["content-security-policy"]
    assert f"script-src 'sha256-{_sha(scripts[0])}'" in csp and "unsafe-inline" not in csp
    assert f"style-src 'sha256-{_sha(_inline('style', html)[0])}'" in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert 'name="viewport"' in html
    assert TOKEN not in html and "echo ***" in html  # the monitor's own token, masked
    index = tc.get("/").text
    assert "fix &lt;b&gt;it&lt;/b&gt;" in index and "<b>it</b>" not in index and "c1" in index


def test_the_script_writes_data_as_text_only() -> None:
    script = pages.asset("app.js")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    assert "textContent" in script


def test_api_queries_are_checked(served: Any) -> None:
    tc, _hub, state = served
    _record(state, "c2", "a task")
    rows = tc.get("/api/cycles", params={"status": "running", "limit": 5}).json()
    assert [r["cycle_id"] for r in rows] == ["c2"] and rows[0]["budget_s"] == 600 and rows[0]["max_cost_usd"] == 3.0
    assert tc.get("/api/cycles", params={"status": "succeeded"}).json() == []
    assert tc.get("/api/cycles", params={"limit": 0}).status_code == 400
    assert tc.get("/api/cycles", params={"status": "bogus"}).status_code == 400
    assert tc.get("/api/cycles/c2").json()["decision"]["title"] == "a task"
    assert tc.get("/api/cycles/c2/events", headers={"Last-Event-ID": "-1"}).status_code == 400
    assert tc.get("/cycles/nope").status_code == 404
    unauth = tc.get("/api/cycles", headers={"Authorization": "Bearer wrong"})
    assert unauth.status_code == 401 and unauth.headers["www-authenticate"].startswith("Bearer")
    assert tc.get("/healthz", headers={"Authorization": ""}).json()["redis"] is True


def test_signing_in_through_the_form(served: Any) -> None:
    tc, _hub, _state = served
    anon = {"Authorization": ""}
    wrong = tc.post("/signin", data={"token": "nope"}, headers=anon, follow_redirects=False)
    assert wrong.status_code == 401 and "not the token" in wrong.text
    ok = tc.post("/signin", data={"token": TOKEN}, headers=anon, follow_redirects=False)
    assert ok.status_code == 303
    cookie = ok.headers["set-cookie"]
    assert f"{COOKIE_NAME}={session_cookie(TOKEN)}" in cookie and "HttpOnly" in cookie and TOKEN not in cookie


# -- the live channel's buffer -----------------------------------------------------------------------


def test_a_slow_client_of_the_live_channel_keeps_a_bounded_buffer_and_is_told_what_it_lost() -> None:
    sub = Subscriber(size=3)
    for i in range(1, 8):
        sub.put(b'{"seq": %d, "cycle_id": "c", "kind": "agent.message", "data": {}}' % i)
    assert len(sub.buffer) == 3 and sub.dropped == 4

    class OneSubscriber:
        @contextlib.asynccontextmanager
        async def subscribe(self) -> AsyncIterator[Subscriber]:
            yield sub

    async def first(n: int) -> list[Any]:
        out = []
        async for message in all_events(OneSubscriber(), Redactor({})):  # type: ignore[arg-type]
            out.append(message)
            if len(out) == n:
                break
        return out

    messages = asyncio.run(first(4))
    assert messages[0].event == "overflow" and messages[0].data == '{"dropped":4}'
    assert [m.data.split(",")[0] for m in messages[1:]] == ['{"seq": 5', '{"seq": 6', '{"seq": 7']
    assert all(m.id is None for m in messages)  # seq numbers one cycle only: no resuming the whole channel


def test_a_cycle_stream_reads_redis_only_as_the_client_takes_events() -> None:
    """A slow client holds at most one batch: the next XREAD happens only once the previous batch was sent."""

    class Stream:
        def __init__(self, n: int) -> None:
            self.rows = [
                (f"{i}-0".encode(), {b"seq": str(i).encode(), b"event": b'{"seq": %d, "kind": "agent.message"}' % i})
                for i in range(1, n + 1)
            ]
            self.reads: list[int] = []

        async def xread(self, streams: dict[str, str], count: int, block: int) -> list[Any]:
            cursor = int(next(iter(streams.values())).split("-")[0])
            self.reads.append(count)
            batch = [r for r in self.rows if int(r[0].split(b"-")[0]) > cursor][:count]
            return [(b"k", batch)] if batch else []

    async def closed() -> bool:
        return False

    async def take(stream: Stream, n: int) -> list[Any]:
        out = []
        async for message in cycle_events(stream, "k", 0, closed, Redactor({})):
            out.append(message)
            if len(out) == n:
                break
        return out

    stream = Stream(10 * BATCH)
    taken = asyncio.run(take(stream, 1))
    assert [m.id for m in taken] == ["1"] and stream.reads == [BATCH]  # one batch read, one event sent
    stream = Stream(10 * BATCH)
    taken = asyncio.run(take(stream, BATCH + 1))
    assert [m.id for m in taken] == [str(i) for i in range(1, BATCH + 2)] and len(stream.reads) == 2
    resumed = Stream(3)
    out: list[Any] = []

    async def after_two() -> None:
        async for message in cycle_events(resumed, "k", 2, closed, Redactor({})):
            out.append(message)
            break

    asyncio.run(after_two())
    assert [m.id for m in out] == ["3"]  # Last-Event-ID 2: what follows, once
