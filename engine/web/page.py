"""The auditors' page at `/`: lifecycles with filters, one lifecycle's story, the report.

One self-contained document: its script and style are inline, it calls only this server's JSON
API (the Content-Security-Policy forbids every other source), and it writes what it reads as
text, never as markup.
"""

from __future__ import annotations

import html
import secrets

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from engine.core.lifecycle import State

router = APIRouter(include_in_schema=False)


def policy(nonce: str) -> str:
    return (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1a202c; margin: 1.5rem; }
h1 { font-size: 1.4rem; margin: 0 0 .8rem; } h2 { font-size: 1.1rem; margin: 1.5rem 0 .4rem; }
form { display: flex; gap: .8rem; flex-wrap: wrap; align-items: end; margin-bottom: .8rem; }
label { display: flex; flex-direction: column; font-size: .85rem; color: #4a5568; }
table { border-collapse: collapse; margin: .3rem 0; }
th, td { padding: .2rem .6rem; border-bottom: 1px solid #e2e8f0; text-align: left; white-space: nowrap; }
th { background: #f7fafc; } td.facts { white-space: normal; max-width: 40rem; }
nav button { margin-right: .4rem; } nav button[aria-pressed="true"] { font-weight: bold; }
#error { color: #c53030; } #count { color: #4a5568; }
iframe { width: 100%; height: 70rem; border: 1px solid #e2e8f0; }
a { color: #2b6cb0; cursor: pointer; }
"""

_SCRIPT = """
"use strict";
const $ = (id) => document.getElementById(id);
const show = (name) => {
  for (const view of ["lifecycles", "story", "report"]) {
    $(view).hidden = view !== name;
    $("tab-" + view).setAttribute("aria-pressed", String(view === name));
  }
};

async function api(path) {
  const token = sessionStorage.getItem("read-token");
  const response = await fetch(path, {headers: token ? {Authorization: "Bearer " + token} : {}});
  const json = (response.headers.get("content-type") || "").startsWith("application/json");
  const body = json ? await response.json() : await response.text();
  if (!response.ok) {
    if (response.status === 401) $("auth").hidden = false;
    throw new Error(json ? (body.field ? body.field + ": " : "") + body.reason : response.statusText);
  }
  return body;
}

function failed(error) { $("error").textContent = String(error.message || error); }

function fill(table, headers, rows) {
  table.replaceChildren();
  const head = table.createTHead().insertRow();
  for (const name of headers) { const th = document.createElement("th"); th.textContent = name; head.append(th); }
  const body = table.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    for (const value of row) {
      const td = tr.insertCell();
      if (value instanceof Node) td.append(value);
      else td.textContent = value === null || value === undefined || value === "" ? "-" : String(value);
    }
  }
  return body;
}

function filters() {
  const query = new URLSearchParams();
  for (const name of ["state", "symbol", "since", "until"]) {
    const value = $(name).value.trim();
    if (value) query.set(name, value);
  }
  return query;
}

async function listLifecycles() {
  $("error").textContent = "";
  const query = filters();
  try {
    const found = await api("/api/lifecycles?" + query);
    $("count").textContent = found.count + " lifecycle(s)";
    fill($("lifecycle-table"),
         ["id", "signal", "symbol", "side", "mode", "state", "qty", "filled", "fill price", "P&L", "R",
          "created (UTC)", "reason"],
         found.lifecycles.map((lc) => {
           const link = document.createElement("a");
           link.textContent = lc.id;
           link.dataset.lifecycle = lc.id;
           link.addEventListener("click", () => openStory(lc.id));
           return [link, lc.signal_id, lc.symbol, lc.side, lc.mode, lc.state, lc.qty, lc.filled_qty,
                   lc.filled_avg_price, lc.realized_pnl, lc.r_multiple, lc.created_at, lc.reject_reason];
         }));
    show("lifecycles");
  } catch (error) { failed(error); }
}

const facts = (payload) => Object.entries(payload || {}).filter(([, v]) => v !== null)
  .map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v)).join(", ");

async function openStory(key) {
  $("error").textContent = "";
  try {
    const story = await api("/api/lifecycles/" + encodeURIComponent(key));
    const lc = story.lifecycle;
    $("story-title").textContent = "Lifecycle " + lc.id + " - signal " + lc.signal_id + " (" + lc.state + ")";
    fill($("story-facts"), ["field", "value"], Object.entries(lc));
    const rows = fill($("story-transitions"), ["seq", "at (UTC)", "trigger", "from", "to", "source", "facts"],
      story.transitions.map((t) => [t.seq, t.at, t.trigger, t.from_state, t.to_state, t.source, facts(t.payload)]));
    for (const tr of rows.rows) tr.cells[6].className = "facts";
    fill($("story-orders"), ["client_order_id", "broker id", "leg", "side", "type", "tif", "qty", "limit", "stop",
                             "status", "filled", "avg price", "updated (UTC)"],
      story.orders.map((o) => [o.client_order_id, o.broker_order_id, o.leg, o.side, o.order_type, o.time_in_force,
                               o.qty, o.limit_price, o.stop_price, o.status, o.filled_qty, o.filled_avg_price,
                               o.updated_at]));
    fill($("story-fills"), ["at (UTC)", "execution_id", "order", "leg", "qty", "price"],
      story.fills.map((f) => [f.at, f.execution_id, f.client_order_id, f.leg, f.qty, f.price]));
    show("story");
  } catch (error) { failed(error); }
}

async function openReport() {
  $("error").textContent = "";
  const query = filters();
  query.delete("state"); query.delete("symbol");
  try {
    $("report-frame").srcdoc = await api("/report?" + query);
    show("report");
  } catch (error) { failed(error); }
}

$("filters").addEventListener("submit", (event) => { event.preventDefault(); listLifecycles(); });
$("tab-lifecycles").addEventListener("click", listLifecycles);
$("tab-story").addEventListener("click", () => show("story"));
$("tab-report").addEventListener("click", openReport);
$("auth").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("read-token", $("read-token").value.trim());
  $("read-token").value = "";
  $("auth").hidden = true;
  listLifecycles();
});
listLifecycles();
"""


def page(nonce: str) -> str:
    options = "".join(f'<option value="{s.value}">{s.value}</option>' for s in State)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Smart Order Executor - ledger</title>
<link rel="icon" href="data:,"><style>{_STYLE}</style></head>
<body>
<h1>Smart Order Executor - ledger (read-only)</h1>
<form id="auth" hidden><label>This server's reads need the read token
<input id="read-token" type="password" autocomplete="off"></label><button>Use it</button></form>
<nav><button id="tab-lifecycles" type="button">Lifecycles</button><button id="tab-story" type="button">Lifecycle
</button><button id="tab-report" type="button">Report</button></nav>
<p id="error" role="alert"></p>
<section id="lifecycles">
<form id="filters">
<label>state<select id="state"><option value="">any</option>{options}</select></label>
<label>symbol<input id="symbol" size="8" maxlength="16"></label>
<label>created from<input id="since" type="date"></label>
<label>created to<input id="until" type="date"></label>
<button id="apply">Apply</button>
</form>
<p id="count"></p><table id="lifecycle-table"></table>
</section>
<section id="story" hidden>
<h2 id="story-title">Pick a lifecycle from the list</h2><table id="story-facts"></table>
<h2>Transitions</h2><table id="story-transitions"></table>
<h2>Orders</h2><table id="story-orders"></table>
<h2>Fills</h2><table id="story-fills"></table>
</section>
<section id="report" hidden><iframe id="report-frame" title="report" sandbox></iframe></section>
<script nonce="{html.escape(nonce)}">{_SCRIPT}</script>
</body></html>
"""


@router.get("/", response_class=HTMLResponse)
def index() -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    return HTMLResponse(page(nonce), headers={"Content-Security-Policy": policy(nonce),
                                              "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})
