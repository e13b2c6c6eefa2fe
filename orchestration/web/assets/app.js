"use strict";
// The monitor's only script. Everything it shows of a cycle (agent text included) goes into the page as
// text (textContent), never as markup.
(function () {
  const body = document.body;

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function str(v) {
    if (v === undefined || v === null) return "";
    return typeof v === "string" ? v : JSON.stringify(v);
  }
  function money(v) {
    const n = Number(v || 0);
    return "$" + (n !== 0 && Math.abs(n) < 1 ? n.toFixed(4) : n.toFixed(2));
  }
  function seconds(v) {
    return v === null || v === undefined ? "" : Math.round(Number(v)) + " s";
  }
  function safeUrl(url) {
    return typeof url === "string" && /^https?:\/\//.test(url) ? url : null;
  }
  function link(url, text) {
    const href = safeUrl(url);
    if (!href) return el("span", text || "");
    const a = el("a", text || href);
    a.href = href;
    a.rel = "noopener noreferrer";
    return a;
  }

  // What one event says, in one line (the same as the server's rendering and `orchestrate watch`).
  function detail(ev) {
    const d = ev.data || {};
    let text = "";
    switch (ev.kind) {
      case "agent.message": text = str(d.text); break;
      case "agent.tool_call":
      case "agent.file_change":
        text = ["tool", "path", "command"].filter((k) => d[k]).map((k) => str(d[k])).join(" "); break;
      case "agent.command": text = str(d.command); break;
      case "agent.tool_result": text = str(d.tool) + " " + (d.is_error ? "error" : "ok"); break;
      case "agent.usage": text = "in=" + str(d.input) + " out=" + str(d.output) + " cost=$" + str(d.cost_usd); break;
      case "decision.made":
        text = str(d.title) + " → " + str(d.agent) + " (" + str(d.source) + ", " + str(d.confidence) + ")"; break;
      case "cycle.finished":
      case "cycle.skipped": text = (str(d.status || "skipped") + " " + str(d.reason)).trim(); break;
      case "pr.opened":
      case "pr.skipped": text = str(d.url || d.reason); break;
      case "stage.failed":
      case "agent.finished":
        text = ["status", "stop_reason", "error"].filter((k) => d[k]).map((k) => k + "=" + str(d[k])).join(" "); break;
      case "stage.skipped": text = "if " + str(d.if) + " was false"; break;
      case "notify.sent": text = str(d.url) + " → " + str(d.status_code) + (d.error ? " (" + str(d.error) + ")" : ""); break;
      default: text = "";
    }
    if (ev.kind.startsWith("stage.") && Number.isInteger(d.step)) {
      text = ("[" + d.step + (d.as ? " " + str(d.as) : "") + "] " + text).trim();
    }
    return text.length > 4000 ? text.slice(0, 4000) + "…" : text;
  }

  function setStatus(node, status, reason) {
    if (!node) return;
    node.textContent = status + (reason && reason !== status ? " (" + reason + ")" : "");
    node.className = "status status-" + status;
  }

  // -- the cycles table ------------------------------------------------------------------------------
  function cyclesPage() {
    const tbody = document.getElementById("cycles-body");
    const count = document.getElementById("cycles-count");
    const query = body.dataset.query || "";
    let pending = null;

    function cell(label, content, cls) {
      const td = el("td", null, cls);
      td.dataset.label = label;
      if (content instanceof Node) td.appendChild(content); else td.textContent = str(content);
      return td;
    }
    function row(c) {
      const tr = el("tr");
      const a = el("a", c.cycle_id, "mono");
      a.href = "/cycles/" + encodeURIComponent(c.cycle_id);
      tr.appendChild(cell("cycle", a));
      tr.appendChild(cell("workspace", c.workspace));
      const st = el("span");
      setStatus(st, c.status, c.reason);
      tr.appendChild(cell("status", st));
      tr.appendChild(cell("stage", c.stage));
      tr.appendChild(cell("agent", (c.decision && c.decision.agent) || ""));
      const took = c.started_at ? seconds(c.elapsed_s) + " / " + seconds(c.budget_s) : "not started";
      tr.appendChild(cell("time", took));
      tr.appendChild(cell("cost", money(c.cost_usd) + (c.max_cost_usd !== null ? " / " + money(c.max_cost_usd) : "")));
      const pr = c.pr || {};
      tr.appendChild(cell("PR", pr.url ? link(pr.url, "#" + (pr.number || "PR")) : str(pr.status)));
      tr.appendChild(cell("task", (c.decision && c.decision.title) || ""));
      return tr;
    }
    async function refresh() {
      try {
        const res = await fetch("/api/cycles" + query, { headers: { Accept: "application/json" } });
        if (!res.ok) return;
        const rows = await res.json();
        tbody.replaceChildren(...rows.map(row));
        if (count) count.textContent = String(rows.length);
      } catch (e) {
        /* the next event or tick tries again */
      }
    }
    function soon() {
      if (pending) return;
      pending = setTimeout(() => { pending = null; refresh(); }, 400);
    }
    const flash = document.getElementById("flash");
    for (const form of document.querySelectorAll("form.run-form")) {
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const ws = form.dataset.workspace;
        if (!window.confirm("Start a cycle of " + ws + " now? An agent runs within the workspace's budget.")) return;
        try {
          const res = await fetch(form.action, { method: "POST", headers: { Accept: "application/json" } });
          const out = await res.json().catch(() => ({}));
          if (res.ok && typeof out.url === "string" && out.url.startsWith("/cycles/")) window.location.assign(out.url);
          else if (flash) flash.textContent = str(out.error || res.status);
        } catch (err) {
          if (flash) flash.textContent = "could not reach the monitor: " + err;
        }
      });
    }
    const live = new EventSource("/api/events");
    live.onmessage = soon;
    live.addEventListener("overflow", soon);
    setInterval(refresh, 5000);
  }

  // -- one cycle -------------------------------------------------------------------------------------
  function cyclePage() {
    const id = body.dataset.cycle;
    const logBody = document.getElementById("events-body");
    const statusNode = document.getElementById("status");
    const stageNode = document.getElementById("stage");
    const budgetBar = document.getElementById("budget-bar");
    const budgetText = document.getElementById("budget-text");
    const costBar = document.getElementById("cost-bar");
    const costText = document.getElementById("cost-text");
    const cancelForm = document.getElementById("cancel-form");
    const flash = document.getElementById("flash");
    const budget = Number(body.dataset.budget || 0);
    const costCap = Number(body.dataset.costCap || 0);
    let startedAt = body.dataset.startedAt ? Date.parse(body.dataset.startedAt) : null;
    let endedAt = null;
    let elapsedDone = body.dataset.elapsed ? Number(body.dataset.elapsed) : null;
    let cost = 0;
    let costBase = 0;
    const MAX_ROWS = 3000;

    function tick() {
      let elapsed = elapsedDone;
      if (elapsed === null && startedAt !== null) elapsed = ((endedAt || Date.now()) - startedAt) / 1000;
      if (elapsed === null) return;
      if (budgetBar && budget > 0) budgetBar.value = Math.min(elapsed, budget);
      if (budgetText) budgetText.textContent = Math.round(elapsed) + " s of " + (budget || "?") + " s";
    }
    function showCost() {
      if (costBar && costCap > 0) costBar.value = Math.min(cost, costCap);
      if (costText) costText.textContent = money(cost) + " of " + (costCap ? money(costCap) : "no cap");
    }
    function decision(d) {
      const fields = { "decision-title": d.title, "decision-agent": d.agent,
        "decision-source": str(d.source) + ", confidence " + str(d.confidence), "decision-rationale": d.rationale };
      for (const [key, value] of Object.entries(fields)) {
        const node = document.getElementById(key);
        if (node) node.textContent = str(value);
      }
      document.getElementById("decision").classList.remove("hidden");
      const title = document.getElementById("title");
      if (title && d.title) title.textContent = str(d.title);
    }
    function report(r) {
      const box = document.getElementById("report");
      const dl = document.getElementById("report-body");
      if (!box || !dl || !r) return;
      const rows = [["status", r.status + (r.reason ? " (" + r.reason + ")" : "")]];
      if (r.duration_s !== null && r.duration_s !== undefined) rows.push(["duration", Number(r.duration_s).toFixed(1) + " s"]);
      if (r.decision) rows.push(["task", str(r.decision.title)], ["agent", str(r.decision.agent)]);
      const ag = r.agent;
      if (ag) {
        const tok = ag.tokens || {};
        rows.push(["run", str(ag.status) + ", exit " + str(ag.exit_code) + ", " + str(ag.num_turns) + " turns, " +
          money(ag.cost_usd) + ", tokens in " + str(tok.input) + " out " + str(tok.output)]);
        if (ag.files_changed && ag.files_changed.length) rows.push(["files", ag.files_changed.join(", ")]);
        if (ag.summary) rows.push(["summary", str(ag.summary)]);
      }
      if (r.branch) rows.push(["branch", str(r.branch)]);
      const pr = r.pr || {};
      if (pr.url) rows.push(["pr", link(pr.url, pr.url)]);
      else if (pr.status) rows.push(["pr", str(pr.status) + (pr.reason ? " (" + pr.reason + ")" : "")]);
      if (r.steps && r.steps.length > 1) {
        rows.push(["steps", r.steps.map((s) => str(s.op) + (s.as ? " → " + s.as : "") + " " + str(s.status)).join("; ")]);
      }
      dl.replaceChildren();
      for (const [k, v] of rows) {
        dl.appendChild(el("dt", k));
        const dd = el("dd");
        if (v instanceof Node) dd.appendChild(v); else dd.textContent = v;
        dl.appendChild(dd);
      }
      box.classList.remove("hidden");
    }
    const logBox = logBody.closest(".log");
    function following() {
      return !logBox || logBox.scrollHeight - logBox.scrollTop - logBox.clientHeight < 60;
    }
    function append(ev) {
      const follow = following(); // stay at the newest event unless the reader scrolled up
      const tr = el("tr", null, "kind-" + ev.kind.replace(".", "-"));
      tr.appendChild(el("td", ev.seq, "seq"));
      tr.appendChild(el("td", str(ev.ts).slice(11, 19), "time"));
      tr.appendChild(el("td", ev.stage, "stage"));
      tr.appendChild(el("td", ev.kind, "kind"));
      tr.appendChild(el("td", detail(ev), "detail"));
      logBody.appendChild(tr);
      while (logBody.rows.length > MAX_ROWS) logBody.deleteRow(0);
      if (follow && logBox) logBox.scrollTop = logBox.scrollHeight;
    }
    function handle(ev) {
      append(ev);
      const d = ev.data || {};
      switch (ev.kind) {
        case "cycle.started":
          startedAt = Date.parse(ev.ts); elapsedDone = null; setStatus(statusNode, "running"); break;
        case "stage.started":
          if (stageNode) stageNode.textContent = ev.stage; break;
        case "decision.made": decision(d); break;
        case "agent.started": costBase = cost; break;
        case "agent.usage":
          cost = Math.max(cost, costBase + Number(d.cost_usd || 0)); showCost(); break;
        case "cycle.finished":
          endedAt = Date.parse(ev.ts);
          setStatus(statusNode, d.status, d.reason);
          if (stageNode) stageNode.textContent = "finished";
          if (d.report) {
            report(d.report);
            if (d.report.duration_s !== null && d.report.duration_s !== undefined) elapsedDone = Number(d.report.duration_s);
            if (d.report.agent) { cost = Math.max(cost, Number(d.report.agent.cost_usd || 0)); showCost(); }
          }
          if (cancelForm) cancelForm.classList.add("hidden");
          break;
        default: break;
      }
      tick();
    }

    logBody.replaceChildren(); // the stream replays every event; the server's rows were for pages without script
    const stream = new EventSource("/api/cycles/" + encodeURIComponent(id) + "/events");
    stream.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      handle(ev);
      if (ev.kind === "cycle.finished") stream.close();
    };
    setInterval(tick, 1000);
    tick();
    showCost();

    if (cancelForm) {
      cancelForm.addEventListener("submit", async (e) => {
        e.preventDefault();
        if (!window.confirm("Cancel cycle " + id + "? The agent is stopped and its work is kept on the branch.")) return;
        try {
          const res = await fetch(cancelForm.action, { method: "POST", headers: { Accept: "application/json" } });
          const out = await res.json().catch(() => ({}));
          if (flash) flash.textContent = res.ok ? "cancel requested: the cycle ends in a few seconds" : str(out.error || res.status);
        } catch (err) {
          if (flash) flash.textContent = "could not reach the monitor: " + err;
        }
      });
    }
  }

  if (body.dataset.page === "cycles") cyclesPage();
  if (body.dataset.page === "cycle") cyclePage();
})();
