"""`orchestrate serve` as a user runs it (a real subprocess), on a real redis-server, with a real prefork worker
running the stand-in agent: who may use it, the event streams (replay, follow, resume, concurrent publishing),
a cycle started, watched and cancelled through the API, the metrics, and the refusals to start."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from orchestration.hub import RedisHub
from orchestration.web.auth import COOKIE_NAME
from tests.helpers import celery_worker, free_port, isolated_env, orchestrate, wait_for
from tests.serve_helpers import TOKEN, collect, read_sse, serve_process, workspace

pytestmark = pytest.mark.integration


@dataclass
class Served:
    url: str
    env: dict[str, str]
    hub: RedisHub
    log: Path
    tmp: Path

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=30, **kw)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One Redis, one worker and one monitor (with a token) for the module; a workspace `demo` whose agent runs
    until cancelled."""
    tmp = tmp_path_factory.mktemp("serve")
    with isolated_env(tmp, ORCH_SERVE_TOKEN=TOKEN) as env:
        workspace(tmp, Path(env["ORCH_CONFIG_DIR"]))
        hub = RedisHub(redis.Redis.from_url(env["ORCH_REDIS_URL"]), env["ORCH_KEY_PREFIX"])
        with celery_worker(env, tmp / "worker.log"), serve_process(env, tmp / "serve.log") as url:
            yield Served(url, env, hub, tmp / "serve.log", tmp)
        log = (tmp / "serve.log").read_text()
        assert TOKEN not in log, "the token reached the monitor's log"
        assert "Traceback" not in log, log[-3000:]


ROUTES = [
    ("GET", "/"),
    ("GET", "/cycles/some-cycle"),
    ("GET", "/api/cycles"),
    ("GET", "/api/cycles/some-cycle"),
    ("GET", "/api/cycles/some-cycle/events"),
    ("GET", "/api/events"),
    ("POST", "/api/cycles/some-cycle/cancel"),
    ("POST", "/api/workspaces/demo/run"),
    ("GET", "/metrics"),
]


@pytest.mark.timeout(120)
def test_every_route_but_health_and_signin_needs_the_token(served: Served) -> None:
    wrong = [
        {},
        {"Authorization": "Bearer not-the-token-at-all-0000"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Cookie": f"{COOKIE_NAME}=forged"},
        {"Cookie": f"{COOKIE_NAME}={TOKEN}"},  # the token itself is not the session
    ]
    for method, path in ROUTES:
        for headers in wrong:
            r = httpx.request(method, served.url + path, headers=headers, timeout=30)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert TOKEN not in r.text
    html = served.get("/", headers={"Accept": "text/html"})
    assert html.status_code == 401 and 'href="/signin"' in html.text
    health = served.get("/healthz")
    assert health.status_code == 200 and health.json()["redis"] is True
    assert wait_for(lambda: served.get("/healthz").json()["workers"] >= 1, 15)  # the worker's heartbeat
    form = served.get("/signin")
    assert form.status_code == 200 and 'name="token"' in form.text
    assert "content-security-policy" in form.headers
    # With the token, the same routes answer (404 for a cycle that does not exist).
    assert served.get("/api/cycles", headers=served.auth).status_code == 200
    assert served.get("/api/cycles/some-cycle", headers=served.auth).status_code == 404
    assert served.get("/api/cycles/some-cycle/events", headers=served.auth).status_code == 404
    assert served.post("/api/cycles/some-cycle/cancel", headers=served.auth).status_code == 404
    assert served.post("/api/workspaces/nope/run", headers=served.auth).status_code == 404


@pytest.mark.timeout(120)
def test_signing_in_sets_a_derived_cookie_and_cookie_posts_need_this_origin(served: Served) -> None:
    bad = served.post("/signin", data={"token": "wrong-token-wrong-token"})
    assert bad.status_code == 401 and COOKIE_NAME not in bad.headers.get("set-cookie", "")
    foreign = served.post("/signin", data={"token": TOKEN}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    ok = served.post("/signin", data={"token": TOKEN}, headers={"Origin": served.url})
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax") and TOKEN not in cookie
    session = ok.cookies[COOKIE_NAME]

    jar = {"Cookie": f"{COOKIE_NAME}={session}"}
    assert served.get("/", headers=jar).status_code == 200  # a page read needs no Origin
    path = "/api/cycles/some-cycle/cancel"
    assert served.post(path, headers=jar).status_code == 403  # no Origin
    for origin in ("https://evil.example", "http://127.0.0.1:1", "null", served.url + ".evil.example"):
        assert served.post(path, headers={**jar, "Origin": origin}).status_code == 403, origin
    assert served.post(path, headers={**jar, "Origin": served.url}).status_code == 404  # through: no such cycle
    assert served.post(path, headers=served.auth).status_code == 404  # a bearer needs no Origin


def _publish(hub: RedisHub, cycle_id: str, count: int, writers: int) -> None:
    """`count` events from each of `writers` threads at once, each with a hub (a Redis connection) of its own."""

    def write(n: int) -> None:
        mine = RedisHub(redis.Redis(connection_pool=hub.redis.connection_pool), hub.keys.prefix)
        for i in range(count):
            mine.emit(cycle_id, "ws", "execute", "agent.message", {"text": f"writer {n} line {i}"})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.timeout(120)
def test_replay_then_follow_delivers_every_seq_once_under_concurrent_publishing(served: Served) -> None:
    cycle_id = f"sse-{time.monotonic_ns()}"
    served.hub.emit(cycle_id, "ws", "start", "cycle.started", {})
    _publish(served.hub, cycle_id, 50, 2)  # 101 events to replay
    url = f"{served.url}/api/cycles/{cycle_id}/events"
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(collect, url, served.auth)  # replays, then follows
        time.sleep(0.3)
        publishing = pool.submit(_publish, served.hub, cycle_id, 150, 4)  # 600 more, from 4 writers
        time.sleep(0.05)
        middle = pool.submit(collect, url, served.auth)  # joins while they publish
        resumed = pool.submit(collect, url, {**served.auth, "Last-Event-ID": "321"})
        publishing.result(timeout=60)
        served.hub.emit(cycle_id, "ws", "finish", "cycle.finished", {"status": "succeeded"})
        streams = [f.result(timeout=60) for f in (first, middle, resumed)]
    total = 1 + 100 + 600 + 1
    for (status, events), start in zip(streams, (1, 1, 322), strict=True):
        assert status == 200
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(start, total + 1)), (start, len(seqs), seqs[:5], seqs[-5:])
        assert events[-1]["kind"] == "cycle.finished"  # and the stream ended there, by itself
    # Resuming after the end: nothing left, and 204 tells an EventSource to stop reconnecting.
    assert (
        served.get(f"/api/cycles/{cycle_id}/events", headers={**served.auth, "Last-Event-ID": str(total)}).status_code
        == 204
    )
    assert (
        served.get(f"/api/cycles/{cycle_id}/events", headers={**served.auth, "Last-Event-ID": "x"}).status_code == 400
    )


@pytest.mark.timeout(60)
def test_the_live_channel_and_what_the_monitor_masks(served: Served) -> None:
    cycle_id = f"live-{time.monotonic_ns()}"
    got: list[dict[str, Any]] = []
    with (
        httpx.Client(timeout=httpx.Timeout(10.0, read=30)) as client,
        client.stream("GET", served.url + "/api/events", headers=served.auth) as response,
    ):
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        channel = served.hub.keys.updates
        assert wait_for(lambda: served.hub.redis.pubsub_numsub(channel)[0][1] >= 1, 10)
        served.hub.emit(cycle_id, "ws", "execute", "agent.message", {"text": f"the token is {TOKEN}"})
        served.hub.emit(cycle_id, "ws", "finish", "cycle.finished", {"status": "succeeded"})
        for message in read_sse(response):
            event = message.json
            if event["cycle_id"] == cycle_id:
                got.append(event)
            if len(got) == 2:
                break
    assert [e["kind"] for e in got] == ["agent.message", "cycle.finished"]
    # The worker (here: the test) did not know the monitor's token; the monitor masks it all the same.
    assert TOKEN not in got[0]["data"]["text"] and "***" in got[0]["data"]["text"]


def _metrics(served: Served) -> dict[str, list[Any]]:
    r = served.get("/metrics", headers=served.auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(r.text)}


def _cycles_gauge(metrics: dict[str, list[Any]], workspace: str, status: str) -> float:
    return sum(
        s.value
        for s in metrics["orchestrate_cycles"]
        if s.labels == {**s.labels, "workspace": workspace, "status": status}
    )


@pytest.mark.timeout(150)
def test_a_cycle_started_watched_and_cancelled_through_the_api(served: Served) -> None:
    bad = served.post("/api/workspaces/demo/run", headers=served.auth, content=b'{"dry_runn": true}')
    assert bad.status_code == 400
    started = served.post("/api/workspaces/demo/run", headers=served.auth)
    assert started.status_code == 202, started.text
    cycle_id = started.json()["cycle_id"]
    url = f"{served.url}/api/cycles/{cycle_id}/events"

    # Follow it live until the agent is at work.
    seen: list[dict[str, Any]] = []
    with (
        httpx.Client(timeout=httpx.Timeout(10.0, read=60)) as client,
        client.stream("GET", url, headers=served.auth) as response,
    ):
        for message in read_sse(response):
            seen.append(message.json)
            if sum(e["kind"] == "agent.message" for e in seen) >= 2:
                break
    kinds = [e["kind"] for e in seen]
    assert kinds[0] == "cycle.queued" and "cycle.started" in kinds and "agent.started" in kinds
    assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))

    rows = served.get("/api/cycles", headers=served.auth, params={"workspace": "demo", "status": "running"}).json()
    assert [r["cycle_id"] for r in rows] == [cycle_id] and rows[0]["live"] is True and rows[0]["budget_s"] == 300
    assert _cycles_gauge(_metrics(served), "demo", "running") == 1
    page = served.get(f"/cycles/{cycle_id}", headers=served.auth)
    assert page.status_code == 200 and "cancel-form" in page.text and "agent.started" in page.text

    # Resume mid-cycle from the last event seen, while cancelling: the rest arrives once, to the end.
    with ThreadPoolExecutor(1) as pool:
        rest = pool.submit(collect, url, {**served.auth, "Last-Event-ID": str(seen[-1]["seq"])}, 90)
        time.sleep(0.5)
        cancel = served.post(f"/api/cycles/{cycle_id}/cancel", headers=served.auth)
        assert cancel.status_code == 202, cancel.text
        status, after = rest.result(timeout=100)
    assert status == 200
    assert [e["seq"] for e in after] == list(range(seen[-1]["seq"] + 1, seen[-1]["seq"] + 1 + len(after)))
    assert after[-1]["kind"] == "cycle.finished" and after[-1]["data"]["status"] == "cancelled"

    report = served.get(f"/api/cycles/{cycle_id}", headers=served.auth).json()
    assert report["status"] == "cancelled" and report["reason"] == "cancelled"
    again = served.post(f"/api/cycles/{cycle_id}/cancel", headers=served.auth)
    assert again.status_code == 409 and again.json()["status"] == "cancelled"
    metrics = _metrics(served)
    assert _cycles_gauge(metrics, "demo", "cancelled") == 1
    assert _cycles_gauge(metrics, "demo", "running") == 0
    assert any(s.labels.get("agent") == "claude-code" for s in metrics["orchestrate_agent_runs"])
    assert any(s.value >= len(seen) for s in metrics["orchestrate_events_published"] if s.labels["workspace"] == "demo")
    durations = [s for s in metrics["orchestrate_cycle_duration_seconds"] if s.name.endswith("_count")]
    assert any(s.labels["workspace"] == "demo" and s.value >= 1 for s in durations)
    # The whole stream once more, from a late watcher: seq 1..n, ending with the end.
    status, whole = collect(url, served.auth)
    assert [e["seq"] for e in whole] == list(range(1, after[-1]["seq"] + 1))


def test_serve_refuses_to_start_without_a_token_or_with_no_auth_beyond_loopback(served: Served) -> None:
    env = {k: v for k, v in served.env.items() if k != "ORCH_SERVE_TOKEN"}
    no_token = orchestrate(["serve", "--port", "1"], env, timeout=60)
    assert no_token.returncode == 2 and "ORCH_SERVE_TOKEN is not set" in no_token.stderr
    wide = orchestrate(["serve", "--no-auth", "--host", "0.0.0.0", "--port", "1"], env, timeout=60)
    assert wide.returncode == 2 and "loopback" in wide.stderr
    short = orchestrate(["serve", "--port", "1"], {**env, "ORCH_SERVE_TOKEN": "short"}, timeout=60)
    assert short.returncode == 2 and "too short" in short.stderr
    assert "short" not in short.stdout


@pytest.mark.timeout(60)
def test_no_auth_on_loopback_still_refuses_other_sites_and_a_broker_away_ends_the_record(served: Served) -> None:
    env = {k: v for k, v in served.env.items() if k != "ORCH_SERVE_TOKEN"}
    env["ORCH_BROKER_URL"] = f"redis://:secret-pw-1234@127.0.0.1:{free_port()}/0"  # nothing listens there
    with serve_process(env, served.tmp / "serve-noauth.log", "--no-auth") as url:
        t0 = time.monotonic()
        run = httpx.post(url + "/api/workspaces/demo/run", timeout=30)
        assert run.status_code == 503 and "cannot reach the Celery broker" in run.json()["error"], run.text
        assert time.monotonic() - t0 < 20 and "secret-pw-1234" not in run.text
        failed = httpx.get(url + "/api/cycles", params={"workspace": "demo", "status": "failed"}, timeout=10).json()
        assert len(failed) == 1 and failed[0]["live"] is False  # ended as `orchestrate run` ends it

        assert httpx.get(url + "/api/cycles", timeout=10).status_code == 200
        assert httpx.get(url + "/", timeout=10).status_code == 200
        # A page elsewhere, or a host name rebound to 127.0.0.1, is not this monitor's own page.
        post = httpx.post(url + "/api/cycles/x/cancel", headers={"Origin": "https://evil.example"}, timeout=10)
        assert post.status_code == 403
        assert httpx.get(url + "/api/cycles", headers={"Host": "evil.example"}, timeout=10).status_code == 403
        assert httpx.post(url + "/api/cycles/x/cancel", timeout=10).status_code == 404  # curl, no Origin


@contextmanager
def in_process(redis_url: str, tmp: Path, prefix: str, ping_s: float = 15.0) -> Iterator[str]:
    """The monitor's app under a real uvicorn on loopback, in this process (so that a test may set what the
    command line does not: the heartbeat); yields its base URL."""
    import uvicorn
    from pydantic import SecretStr

    from orchestration.web.app import ServeConfig, create_app

    cfg = ServeConfig(
        redis_url=redis_url,
        key_prefix=prefix,
        config_dir=tmp,
        state_dir=tmp,
        broker_url=redis_url,
        token=SecretStr(TOKEN),
        ping_s=ping_s,
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=15)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.timeout(60)
def test_a_quiet_stream_gets_heartbeats_and_ends_when_its_cycle_ends(redis_url: str, tmp_path: Path) -> None:
    """A cycle with nothing new to say still sends SSE comments (`: ping`) at the configured interval, which
    keep proxies from closing the stream; its `cycle.finished` then ends the stream. The app runs under a real
    uvicorn on loopback, with a 0.3 s heartbeat instead of 15 s."""
    from orchestration.models import CycleContext, CycleRecord, Status
    from orchestration.state import RedisState

    prefix = f"hb{time.time_ns()}"
    client = redis.Redis.from_url(redis_url)
    ctx = CycleContext(
        cycle_id="quiet", workspace="ws", config={}, status=Status.RUNNING, queued_at="2026-01-01T00:00:00.000Z"
    )
    RedisState(client, prefix).save_cycle(CycleRecord(ctx=ctx))
    hub = RedisHub(client, prefix)
    hub.emit("quiet", "ws", "execute", "agent.started", {})
    lines: list[str] = []
    try:
        with in_process(redis_url, tmp_path, prefix, ping_s=0.3) as base:
            url = f"{base}/api/cycles/quiet/events"
            with httpx.stream("GET", url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    lines.append(line)
                    if sum(x.startswith(":") for x in lines) == 3:
                        hub.emit("quiet", "ws", "finish", "cycle.finished", {"status": "succeeded"})
    finally:
        client.close()
    pings = [line for line in lines if line.startswith(":")]
    assert len(pings) >= 3, lines
    data = [line for line in lines if line.startswith("data:")]
    kinds = [orjson.loads(d.removeprefix("data:").strip())["kind"] for d in data]
    assert kinds == ["agent.started", "cycle.finished"]  # and then the stream ended


@pytest.mark.timeout(90)
def test_the_live_channel_subscribes_again_after_redis_restarts(tmp_path: Path) -> None:
    """`/api/events` rides one pub/sub subscription; when Redis goes away and comes back, the monitor subscribes
    again, tells the client it may have lost events (an `overflow` event), and live events flow again."""
    from tests.helpers import redis_server

    with redis_server(tmp_path) as srv, in_process(srv.url, tmp_path, "rs") as base:
        client = redis.Redis.from_url(srv.url)
        hub = RedisHub(client, "rs")
        got: list[tuple[str, str]] = []
        done = threading.Event()

        def listen() -> None:
            with httpx.stream(
                "GET", f"{base}/api/events", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
            ) as r:
                for sse in read_sse(r):
                    got.append((sse.event or "message", sse.data))
                    if '"after-restart"' in sse.data:
                        break
            done.set()

        reader = threading.Thread(target=listen, daemon=True)
        reader.start()
        wait_for(lambda: (hub.emit("c1", "ws", "execute", "agent.message", {"text": "before"}), got)[1], timeout=15)
        srv.stop()
        time.sleep(1.5)  # the subscription breaks off while Redis is away
        srv.start()
        client = redis.Redis.from_url(srv.url)
        hub = RedisHub(client, "rs")
        deadline = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < deadline:
            hub.emit("c2", "ws", "execute", "agent.message", {"text": "after-restart"})
            done.wait(0.5)
        client.close()
        reader.join(5)
    assert done.is_set(), got
    kinds = [kind for kind, _ in got]
    assert "overflow" in kinds  # the client was told that it may have missed events
    assert kinds.index("overflow") < max(i for i, (_, data) in enumerate(got) if "after-restart" in data)
