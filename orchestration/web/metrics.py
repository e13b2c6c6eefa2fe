"""`GET /metrics`: Prometheus text, read from the same Redis state as everything else at scrape time.

A custom collector rather than counters kept in this process: the cycles run in workers, not here, and a
monitor that restarts (or runs twice) must report the same numbers. Everything is computed from the most
recent cycles' records (`WINDOW`, across workspaces), the worker heartbeats, the spend counters and, when the
broker is this same Redis, the lengths of the queues. Counts over that window are gauges: old cycles leave
it and their records expire.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from orchestration.models import CycleRecord
from orchestration.state import RedisState

log = logging.getLogger(__name__)

WINDOW = 500  # the most recent cycles the metrics describe
CYCLE_BUCKETS_S = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0)
STEP_BUCKETS_S = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# kombu's Redis transport keeps a queue's messages of priority 3, 6 and 9 in lists of their own.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def _histogram(
    name: str, doc: str, label: str, samples: dict[str, list[float]], buckets: tuple[float, ...]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for value, seen in sorted(samples.items()):
        cumulative = [(str(edge), float(sum(1 for s in seen if s <= edge))) for edge in buckets]
        cumulative.append(("+Inf", float(len(seen))))
        family.add_metric([value], cumulative, sum(seen))
    return family


def _cost(record: CycleRecord) -> float:
    ctx = record.ctx
    return ctx.spent_usd or (ctx.agent.cost_usd if ctx.agent else 0.0)


class StateCollector(Collector):
    """Reads the cycles, workers, spend and queues at each scrape."""

    def __init__(self, state: RedisState, broker_is_state: bool, window: int = WINDOW) -> None:
        self.state = state
        self.broker_is_state = broker_is_state  # the broker is the same Redis: queue lengths are one LLEN away
        self.window = window

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("orchestrate_redis_up", "Whether the monitor could read Redis at this scrape.")
        try:
            records = self.state.recent_cycles(None, self.window)
            beats = self.state.workers()
        except Exception as exc:  # the scrape still answers, saying Redis is away
            log.warning("metrics: cannot read Redis: %s", exc)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from self._cycles(records)
        yield from self._agents(records)
        yield from self._events(records)
        yield from self._spend(records)
        yield from self._workers(beats)
        if self.broker_is_state:
            yield self._queues(beats)

    def _cycles(self, records: list[CycleRecord]) -> Iterable[Metric]:
        by_status: Counter[tuple[str, str, str]] = Counter()
        took: dict[str, list[float]] = defaultdict(list)
        steps: dict[str, list[float]] = defaultdict(list)
        cost: dict[str, float] = defaultdict(float)
        for r in records:
            by_status[(r.workspace, r.status.value, r.ctx.reason.value if r.ctx.reason else "")] += 1
            cost[r.workspace] += _cost(r)
            if r.report is not None and r.report.duration_s is not None:
                took[r.workspace].append(r.report.duration_s)
            for step in r.ctx.steps:
                if step.duration_s is not None:
                    steps[step.op].append(step.duration_s)
        cycles = GaugeMetricFamily(
            "orchestrate_cycles",
            f"Cycles among the {self.window} most recent, by workspace, status and reason.",
            labels=["workspace", "status", "reason"],
        )
        for (workspace, status, reason), n in sorted(by_status.items()):
            cycles.add_metric([workspace, status, reason], float(n))
        yield cycles
        yield _histogram(
            "orchestrate_cycle_duration_seconds",
            "How long the recent cycles that ended took, from start to report.",
            "workspace",
            took,
            CYCLE_BUCKETS_S,
        )
        yield _histogram(
            "orchestrate_stage_duration_seconds",
            "How long the recent cycles' pipeline steps took, by operation.",
            "op",
            steps,
            STEP_BUCKETS_S,
        )
        spent = GaugeMetricFamily(
            "orchestrate_cycle_cost_usd", "What the recent cycles' agent runs cost, in USD.", labels=["workspace"]
        )
        for workspace, usd in sorted(cost.items()):
            spent.add_metric([workspace], round(usd, 6))
        yield spent

    def _agents(self, records: list[CycleRecord]) -> Iterable[Metric]:
        runs: Counter[tuple[str, str]] = Counter()
        for r in records:
            agent = r.ctx.agent
            if agent is None:
                continue
            name = r.ctx.decision.agent if r.ctx.decision else "unknown"
            runs[(name, agent.status)] += 1
        family = GaugeMetricFamily(
            "orchestrate_agent_runs",
            "Agent runs of the recent cycles, by agent and how the run ended.",
            labels=["agent", "outcome"],
        )
        for (name, outcome), n in sorted(runs.items()):
            family.add_metric([name, outcome], float(n))
        yield family

    def _events(self, records: list[CycleRecord]) -> Iterable[Metric]:
        client: Any = self.state.redis
        keys = [self.state.keys.seq(r.cycle_id) for r in records]
        counts: Counter[str] = Counter()
        for r, raw in zip(records, client.mget(keys) if keys else [], strict=True):
            counts[r.workspace] += int(raw or 0)
        family = GaugeMetricFamily(
            "orchestrate_events_published",
            "Events the recent cycles published on the update hub (each cycle's last seq).",
            labels=["workspace"],
        )
        for workspace, n in sorted(counts.items()):
            family.add_metric([workspace], float(n))
        yield family

    def _spend(self, records: list[CycleRecord]) -> Iterable[Metric]:
        from orchestration.lifecycle import today

        day = today()
        family = GaugeMetricFamily(
            "orchestrate_spend_today_usd",
            "What each workspace with a recent cycle spent today (UTC), against its daily cap.",
            labels=["workspace"],
        )
        for workspace in sorted({r.workspace for r in records}):
            family.add_metric([workspace], self.state.get_spend(workspace, day))
        yield family

    def _workers(self, beats: list[Any]) -> Iterable[Metric]:
        family = GaugeMetricFamily("orchestrate_workers", "Workers whose heartbeat is live, by host.", labels=["host"])
        for host, n in sorted(Counter(b.host for b in beats).items()):
            family.add_metric([host], float(n))
        yield family

    def _queues(self, beats: list[Any]) -> Metric:
        from orchestration.config import AGENT_CONFIGS
        from orchestration.cycle import STAGE_QUEUE, host_queue

        queues = [STAGE_QUEUE, *(f"agent.{name}" for name in AGENT_CONFIGS), *{host_queue(b.host) for b in beats}]
        client: Any = self.state.redis
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            for suffix in _PRIORITY_SUFFIXES:
                pipe.llen(queue + suffix)
        lengths = pipe.execute()
        family = GaugeMetricFamily(
            "orchestrate_queue_depth", "Messages waiting in each queue of the Redis broker.", labels=["queue"]
        )
        for i, queue in enumerate(queues):
            n = len(_PRIORITY_SUFFIXES)
            family.add_metric([queue], float(sum(lengths[i * n : (i + 1) * n])))
        return family
