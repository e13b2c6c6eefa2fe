"""The broker benchmark's worker: a Celery app with one no-op stage task, on the broker and result backend named
by BENCH_BROKER_URL, built by `benchmarks.overhead.bare_app.bench_app`. BENCH_CONF=product takes the
product's Celery settings (`tasks.app.STATIC_CONF`, the visibility timeout it sets, and its Redis transport
`tasks.broker:RedisTransport`); anything else keeps Celery's defaults (kombu's own Redis transport).

    celery -A benchmarks.scale.broker_app worker -P prefork -c 2 -Q bench

The task returns its context (a stage's result is the context for the next one) and notes when it ran
(RPUSH of its end time to `bench:done`), so the sender can tell when the last message was done without
waiting on results.
"""

from __future__ import annotations

import os
import time
from functools import lru_cache
from typing import Any

import redis
from celery import Celery

from benchmarks.overhead.bare_app import bench_app

BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")
DONE_KEY = "bench:done"
QUEUE = "bench"
VISIBILITY_TIMEOUT_S = 43200  # the product's default ORCH_VISIBILITY_TIMEOUT_S


def make_app(conf: str, url: str) -> Celery:
    app = bench_app(f"bench_scale_{conf}", url, conf == "product")
    if conf == "product":
        transport = {"visibility_timeout": VISIBILITY_TIMEOUT_S}
        app.conf.update(
            broker_transport="tasks.broker:RedisTransport",
            broker_transport_options=transport,
            result_backend_transport_options=transport,
        )
    else:
        app.conf.broker_transport = "kombu.transport.redis:Transport"

    @app.task(name="bench.step", bind=True, resultrepr_maxsize=200)  # type: ignore[untyped-decorator]
    def step(self: Any, ctx: dict[str, Any], step: int = 0) -> dict[str, Any]:
        """A stage that does nothing but hand its context on, as every stage returns it for the next."""
        _done().rpush(DONE_KEY, time.time())
        return ctx

    @app.task(name="bench.on_error")  # type: ignore[untyped-decorator]
    def on_error(request: Any, exc: BaseException, traceback: Any) -> None:
        """The error path every stage message names (never taken here)."""

    return app


@lru_cache(maxsize=1)
def _done() -> redis.Redis:
    return redis.Redis.from_url(BROKER_URL)


app = make_app(os.environ.get("BENCH_CONF", "default"), BROKER_URL)
