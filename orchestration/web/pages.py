"""The monitor's HTML, rendered on the server: the cycles table, one cycle, the sign-in form.

Every value that comes from a cycle (agent text, task titles, paths, PR links) is escaped here with
`html.escape`, and the page's script writes such values as text only. The script and the style sheet are
inlined and allowed by their hashes in the Content-Security-Policy (`policy`): no other script can run on
the page, whatever text a cycle carries, and the page loads nothing from anywhere. Without JavaScript the
tables are still there (rendered here) and the page reloads itself every few seconds.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache, lru_cache
from html import escape
from importlib import resources
from typing import Any
from urllib.parse import quote

from orchestration.web.views import CycleRow, safe_url

NO_SCRIPT_REFRESH_S = 10
LOG_ROWS = 300  # events a page without script shows (the script replays them all from the stream)


@cache
def asset(name: str) -> str:
    return resources.files("orchestration.web").joinpath("assets", name).read_text(encoding="utf-8")


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@lru_cache(maxsize=1)
def policy() -> str:
    """The Content-Security-Policy of every response: only the page's own inline script and style (by
    hash), requests only to this server, no frames, no plugins, forms only to this server."""
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src {_digest(asset('app.js'))}",
            f"style-src {_digest(asset('app.css'))}",
            "connect-src 'self'",
            "img-src 'self' data:",  # data: for the empty favicon (no request for /favicon.ico)
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        )
    )


def e(value: Any) -> str:
    """Text for HTML (element content and quoted attributes alike)."""
    return escape("" if value is None else str(value), quote=True)


def _layout(title: str, main: str, *, page: str, data: dict[str, str] | None = None, refresh: bool = True) -> str:
    attrs = "".join(f' data-{k}="{e(v)}"' for k, v in (data or {}).items())
    noscript = f'<noscript><meta http-equiv="refresh" content="{NO_SCRIPT_REFRESH_S}"></noscript>' if refresh else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f'<meta name="referrer" content="same-origin"><title>{e(title)}</title>{noscript}'
        f"<style>{asset('app.css')}</style></head>"
        f'<body data-page="{e(page)}"{attrs}>'
        '<header><a class="home" href="/">orchestrate</a>'
        '<span class="note">cycles across workspaces, live</span></header>'
        f"<main>{main}</main>"
        f"<script>{asset('app.js')}</script></body></html>"
    )


def _money(value: float | None) -> str:
    if value is None:
        return ""
    return f"${value:.4f}" if value and abs(value) < 1 else f"${value:.2f}"


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f} s"


def _status(status: str, reason: str | None, node_id: str | None = None) -> str:
    ident = f' id="{e(node_id)}"' if node_id else ""
    text = status + (f" ({reason})" if reason and reason != status else "")
    return f'<span{ident} class="status status-{e(status)}">{e(text)}</span>'


def _link(url: str | None, text: str) -> str:
    href = safe_url(url)
    if href is None:
        return e(text if url is None else url)
    return f'<a href="{e(href)}" rel="noopener noreferrer">{e(text)}</a>'


def _cell(label: str, content: str, cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<td data-label="{e(label)}"{klass}>{content}</td>'


def cycle_row(row: CycleRow, pr_number: int | None = None) -> str:
    took = f"{_seconds(row.elapsed_s)} / {_seconds(row.budget_s)}" if row.started_at else "not started"
    cost = _money(row.cost_usd) + (f" / {_money(row.max_cost_usd)}" if row.max_cost_usd is not None else "")
    pr = _link(row.pr_url, f"#{pr_number}" if pr_number else "PR") if row.pr_url else e(row.pr_status or "")
    cells = (
        _cell("cycle", f'<a class="mono" href="/cycles/{quote(row.cycle_id, safe="")}">{e(row.cycle_id)}</a>'),
        _cell("workspace", e(row.workspace)),
        _cell("status", _status(row.status, row.reason)),
        _cell("stage", e(row.stage)),
        _cell("agent", e(row.agent or "")),
        _cell("time", e(took)),
        _cell("cost", e(cost)),
        _cell("PR", pr),
        _cell("task", e(row.title or "")),
    )
    return "<tr>" + "".join(cells) + "</tr>"


def _run_forms(workspaces: list[str]) -> str:
    if not workspaces:
        return ""
    forms = "".join(
        f'<form class="run-form inline" method="post" action="/api/workspaces/{quote(w, safe="")}/run" '
        f'data-workspace="{e(w)}"><button type="submit">Run {e(w)} now</button></form> '
        for w in workspaces
    )
    return (
        '<section class="panel"><h2>Start a cycle</h2>'
        '<p class="muted">Now, whatever the schedule and window say, within the workspace\'s budget.</p>'
        f'{forms}<p id="flash" class="flash" role="status"></p></section>'
    )


def cycles_page(rows: list[tuple[CycleRow, int | None]], query: str, workspaces: list[str] | None = None) -> str:
    """`/`: the recent cycles across workspaces, and a button per workspace config to start one now."""
    heads = "".join(f"<th>{h}</th>" for h in ("cycle", "workspace", "status", "stage", "agent", "time", "cost", "PR"))
    body = "".join(cycle_row(row, number) for row, number in rows)
    main = (
        f'<h1>Recent cycles (<span id="cycles-count">{len(rows)}</span>)</h1>'
        f'<p class="muted">Updated live. <a href="/{e(query)}">Reload</a></p>'
        f'<table class="cards"><thead><tr>{heads}<th>task</th></tr></thead>'
        f'<tbody id="cycles-body">{body}</tbody></table>'
        f"{_run_forms(workspaces or [])}"
    )
    return _layout("orchestrate: cycles", main, page="cycles", data={"query": query})


def event_detail(event: dict[str, Any]) -> str:
    """One line saying what an event is about (the page's script says the same)."""
    d = event.get("data") if isinstance(event.get("data"), dict) else {}
    assert isinstance(d, dict)
    kind = str(event.get("kind", ""))

    def s(v: Any) -> str:
        import orjson

        return "" if v is None else v if isinstance(v, str) else orjson.dumps(v).decode()

    text = ""
    if kind == "agent.message":
        text = s(d.get("text"))
    elif kind in ("agent.tool_call", "agent.file_change"):
        text = " ".join(s(d[k]) for k in ("tool", "path", "command") if d.get(k))
    elif kind == "agent.command":
        text = s(d.get("command"))
    elif kind == "agent.tool_result":
        text = f"{s(d.get('tool'))} {'error' if d.get('is_error') else 'ok'}"
    elif kind == "agent.usage":
        text = f"in={s(d.get('input'))} out={s(d.get('output'))} cost=${s(d.get('cost_usd'))}"
    elif kind == "decision.made":
        text = f"{s(d.get('title'))} → {s(d.get('agent'))} ({s(d.get('source'))}, {s(d.get('confidence'))})"
    elif kind in ("cycle.finished", "cycle.skipped"):
        text = f"{s(d.get('status') or 'skipped')} {s(d.get('reason'))}".strip()
    elif kind in ("pr.opened", "pr.skipped"):
        text = s(d.get("url") or d.get("reason"))
    elif kind in ("stage.failed", "agent.finished"):
        text = " ".join(f"{k}={s(d[k])}" for k in ("status", "stop_reason", "error") if d.get(k))
    elif kind == "stage.skipped":
        text = f"if {s(d.get('if'))} was false"
    elif kind == "notify.sent":
        text = f"{s(d.get('url'))} → {s(d.get('status_code'))}" + (f" ({s(d.get('error'))})" if d.get("error") else "")
    if kind.startswith("stage.") and isinstance(d.get("step"), int):
        text = f"[{d['step']}{' ' + s(d['as']) if d.get('as') else ''}] {text}".strip()
    return text if len(text) <= 4000 else text[:4000] + "…"


def event_row(event: dict[str, Any]) -> str:
    kind = str(event.get("kind", ""))
    return (
        f'<tr class="kind-{e(kind.replace(".", "-"))}">'
        f'<td class="seq">{e(event.get("seq"))}</td>'
        f'<td class="time">{e(str(event.get("ts", ""))[11:19])}</td>'
        f'<td class="stage">{e(event.get("stage"))}</td>'
        f'<td class="kind">{e(kind)}</td>'
        f'<td class="detail">{e(event_detail(event))}</td></tr>'
    )


def _report_rows(report: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = [("status", e(f"{report.get('status')}" + _reason(report.get("reason"))))]
    if report.get("duration_s") is not None:
        rows.append(("duration", e(f"{report['duration_s']:.1f} s")))
    dec = report.get("decision") or {}
    if dec:
        rows += [("task", e(dec.get("title"))), ("agent", e(dec.get("agent")))]
    ag = report.get("agent") or {}
    if ag:
        tok = ag.get("tokens") or {}
        run = (
            f"{ag.get('status')}, exit {ag.get('exit_code')}, {ag.get('num_turns')} turns, "
            f"{_money(ag.get('cost_usd') or 0.0)}, tokens in {tok.get('input')} out {tok.get('output')}"
        )
        rows.append(("run", e(run)))
        if ag.get("files_changed"):
            rows.append(("files", e(", ".join(str(f) for f in ag["files_changed"][:50]))))
        if ag.get("summary"):
            rows.append(("summary", e(ag["summary"])))
    if report.get("branch"):
        rows.append(("branch", e(report["branch"])))
    pr = report.get("pr") or {}
    if pr.get("url"):
        rows.append(("pr", _link(pr["url"], str(pr["url"]))))
    elif pr.get("status"):
        rows.append(("pr", e(f"{pr['status']}" + _reason(pr.get("reason")))))
    steps = [s for s in report.get("steps") or [] if isinstance(s, dict)]
    if len(steps) > 1:
        shown = "; ".join(
            f"{s.get('op')}{' → ' + str(s['as']) if s.get('as') else ''} {s.get('status')}" for s in steps
        )
        rows.append(("steps", e(shown)))
    return "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in rows)


def _reason(reason: Any) -> str:
    return f" ({reason})" if reason else ""


def cycle_page(row: CycleRow, report: dict[str, Any], events: list[dict[str, Any]], more: bool) -> str:
    """`/cycles/{id}`: its events as they arrive, the budget and cost bars, the decision, the report, cancel."""
    cid = quote(row.cycle_id, safe="")
    dec = report.get("decision") or {}
    budget = row.budget_s or 0.0
    elapsed = row.elapsed_s or 0.0
    cap = row.max_cost_usd or 0.0
    time_text = f"{elapsed:.0f} s of {budget:.0f} s"
    cost_text = _money(row.cost_usd) + " of " + (_money(cap) if cap else "no cap")
    bars = (
        '<div class="bars">'
        f'<div class="bar"><label for="budget-bar">time: <span id="budget-text">{e(time_text)}</span></label>'
        f'<progress id="budget-bar" max="{e(budget or 1)}" value="{e(min(elapsed, budget))}"></progress></div>'
        f'<div class="bar"><label for="cost-bar">cost: <span id="cost-text">{e(cost_text)}</span></label>'
        f'<progress id="cost-bar" max="{e(cap or 1)}" value="{e(min(row.cost_usd, cap) if cap else 0)}"></progress>'
        "</div></div>"
    )
    hidden = "" if dec else " hidden"
    source = f"{dec.get('source')}, confidence {dec.get('confidence')}" if dec else ""
    decision = (
        f'<section id="decision" class="panel{hidden}"><h2>Decision</h2><dl>'
        f'<dt>task</dt><dd id="decision-title">{e(dec.get("title"))}</dd>'
        f'<dt>agent</dt><dd id="decision-agent">{e(dec.get("agent"))}</dd>'
        f'<dt>source</dt><dd id="decision-source">{e(source)}</dd>'
        f'<dt>why</dt><dd id="decision-rationale">{e(dec.get("rationale"))}</dd>'
        "</dl></section>"
    )
    ended = not row.live
    report_box = (
        f'<section id="report" class="panel{"" if ended else " hidden"}"><h2>Report</h2>'
        f'<dl id="report-body">{_report_rows(report) if ended else ""}</dl></section>'
    )
    cancel = (
        f'<form id="cancel-form" class="inline{" hidden" if ended else ""}" method="post" '
        f'action="/api/cycles/{cid}/cancel"><button class="danger" type="submit">Cancel cycle</button></form>'
    )
    older = f'<p class="muted">The last {LOG_ROWS} events; the live view shows them all.</p>' if more else ""
    log = (
        "<h2>Events</h2>"
        f"{older}"
        '<div class="log"><table class="log-table"><thead><tr><th>#</th><th>time</th><th class="stage">stage</th>'
        f'<th>kind</th><th>detail</th></tr></thead><tbody id="events-body">{"".join(map(event_row, events))}'
        "</tbody></table></div>"
    )
    main = (
        f'<h1 id="title">{e(row.title or row.cycle_id)}</h1>'
        f'<p><span class="mono">{e(row.cycle_id)}</span> · {e(row.workspace)} · '
        f'{_status(row.status, row.reason, "status")} · stage <span id="stage">{e(row.stage)}</span>'
        f"{' · ' + _link(row.pr_url, 'pull request') if row.pr_url else ''}</p>"
        f'{bars}<p id="flash" class="flash" role="status"></p>{cancel}{decision}{report_box}{log}'
    )
    data = {
        "cycle": row.cycle_id,
        "budget": f"{budget:g}",
        "cost-cap": f"{cap:g}",
        "started-at": row.started_at or "",
    }
    if ended and row.elapsed_s is not None:
        data["elapsed"] = f"{row.elapsed_s:g}"
    return _layout(f"orchestrate: {row.title or row.cycle_id}", main, page="cycle", data=data, refresh=row.live)


def signin_page(message: str | None = None) -> str:
    note = f'<p class="flash status-failed">{e(message)}</p>' if message else ""
    main = (
        "<h1>Sign in</h1>"
        '<p class="muted">The monitor\'s token (ORCH_SERVE_TOKEN on the server).</p>'
        f"{note}"
        '<form method="post" action="/signin"><p><label for="token">token</label><br>'
        '<input id="token" name="token" type="password" autocomplete="current-password" required autofocus></p>'
        '<p><button type="submit">Sign in</button></p></form>'
    )
    return _layout("orchestrate: sign in", main, page="signin", refresh=False)


def unauthorized_page() -> str:
    main = '<h1>Sign in first</h1><p><a href="/signin">Sign in</a> with the monitor\'s token.</p>'
    return _layout("orchestrate: sign in first", main, page="denied", refresh=False)


def message_page(title: str, text: str) -> str:
    return _layout(f"orchestrate: {title}", f"<h1>{e(title)}</h1><p>{e(text)}</p>", page="message", refresh=False)
