"""The overhead benchmark's baseline: a bare Celery app with one no-op task, on the broker and result backend
named by BENCH_BROKER_URL. With BENCH_BARE_CONF=product it takes the product's Celery settings instead of
Celery's defaults (`tasks.app.STATIC_CONF`, and with it the product's Redis transport), so that a run can
tell the cost of those settings from the cost of the product's own work in each stage.

    celery -A benchmarks.overhead.bare_app worker -P prefork -c 1 -Q QUEUE
"""

from __future__ import annotations

import os
import time

from celery import Celery

BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0")


def bench_app(name: str, url: str, product: bool) -> Celery:
    """A bare app on `url` (broker and result backend): JSON only, with the product's Celery settings when
    `product` (else Celery's defaults). The benchmarks' baselines are built on it."""
    app = Celery(name, broker=url, backend=url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    if product:
        from tasks.app import STATIC_CONF

        app.conf.update({k: v for k, v in STATIC_CONF.items() if k != "task_default_queue"})
    return app


app = bench_app("bench_bare", BROKER_URL, os.environ.get("BENCH_BARE_CONF") == "product")


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop(stamps: list[list[float]]) -> list[list[float]]:
    """Does nothing but note when it started and ended, after the stamps of the tasks before it."""
    started = time.time()
    return [*stamps, [started, time.time()]]
