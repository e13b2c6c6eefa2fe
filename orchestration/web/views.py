"""What the monitor shows of a cycle, made from its record: the row of the cycles table, and the published
report (§4), masked with this server's secrets (a worker may not have known them all).

The page and the JSON API read these same models, so a table rendered by the server and one redrawn by the
page's script from `/api/cycles` say the same thing.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from orchestration.control import stage_of
from orchestration.models import CycleRecord, parse_ts
from orchestration.redact import default_redactor


def _unix(stamp: str | None) -> float | None:
    moment = parse_ts(stamp)
    return moment.timestamp() if moment is not None else None


class CycleRow(BaseModel):
    """One cycle as the table shows it: where it stands, time against budget, cost against cap."""

    cycle_id: str
    workspace: str
    status: str
    reason: str | None
    stage: str
    agent: str | None
    title: str | None
    queued_at: str | None
    started_at: str | None
    finished_at: str | None
    elapsed_s: float | None  # from start to now, or to the end
    budget_s: float | None
    cost_usd: float
    max_cost_usd: float | None
    pr_url: str | None
    pr_status: str | None
    live: bool

    @classmethod
    def of(cls, record: CycleRecord, now: float | None = None) -> CycleRow:
        ctx, report = record.ctx, record.summary()
        budget = ctx.config.get("budget") if isinstance(ctx.config, dict) else None
        budget = budget if isinstance(budget, dict) else {}
        started = _unix(ctx.started_at)
        if report.duration_s is not None:
            elapsed: float | None = report.duration_s
        elif started is not None:
            ended = _unix(record.finished_at) if record.finished_at else None
            elapsed = max(0.0, (ended or now or time.time()) - started)
        else:
            elapsed = None
        row = cls(
            cycle_id=ctx.cycle_id,
            workspace=ctx.workspace,
            status=ctx.status.value,
            reason=ctx.reason.value if ctx.reason else None,
            stage=stage_of(record),
            agent=ctx.decision.agent if ctx.decision else None,
            title=ctx.decision.title if ctx.decision else None,
            queued_at=ctx.queued_at,
            started_at=ctx.started_at,
            finished_at=record.finished_at,
            elapsed_s=round(elapsed, 1) if elapsed is not None else None,
            budget_s=_number(budget.get("cycle_s")),
            cost_usd=round(ctx.spent_usd or (ctx.agent.cost_usd if ctx.agent else 0.0), 6),
            max_cost_usd=_number(budget.get("max_cost_usd")),
            pr_url=report.pr.url if report.pr else None,
            pr_status=report.pr.status if report.pr else None,
            live=record.live,
        )
        return row.model_validate(default_redactor()(row.model_dump()))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def public_report(record: CycleRecord) -> dict[str, Any]:
    """The cycle's report (§4) as `orchestrate status CYCLE --json` prints it, masked."""
    report: dict[str, Any] = default_redactor()(record.summary().public())
    return report


def safe_url(url: str | None) -> str | None:
    """A link the page may put in an href: http(s) only (a PR URL comes from `gh`'s output, untrusted)."""
    if url and url.startswith(("https://", "http://")):
        return url
    return None
