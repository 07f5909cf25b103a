// The overview page: KPIs of the last final day, the mix, 12 months of trends and the recent
// churn alerts and actions, from GET /api/v1/overview.
"use strict";

function bars(testid, mix) {
  const box = document.querySelector(`[data-testid="${testid}"]`);
  box.replaceChildren();
  const entries = Object.entries(mix || {}).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const top = Math.max(1, ...entries.map((e) => e[1]));
  for (const [name, n] of entries) {
    const fill = el("div", { class: "fill" });
    fill.style.width = `${(100 * n) / top}%`; // CSSOM, which the content security policy allows
    box.append(el("div", { class: "bar", "data-name": name }, el("span", {}, name), el("div", { class: "track" }, fill),
      el("span", { class: "count", "data-testid": `${testid}-${name}` }, fmt.int(n))));
  }
}

function chart(testid, points, value, format) {
  const box = document.querySelector(`[data-testid="${testid}"]`);
  const vals = points.map(value);
  const known = vals.filter((v) => v !== null && v !== undefined);
  if (known.length === 0) {
    box.textContent = "no data yet";
    return;
  }
  const w = 360, h = 140, pad = 28;
  const lo = Math.min(0, ...known), hi = Math.max(...known, lo + 1e-9);
  const x = (i) => pad + ((w - pad - 4) * i) / Math.max(1, vals.length - 1);
  const y = (v) => h - pad + ((lo - v) * (h - pad - 6)) / (hi - lo);
  let d = "";
  vals.forEach((v, i) => {
    if (v === null || v === undefined) return;
    d += (d === "" ? "M" : "L") + x(i).toFixed(1) + " " + y(v).toFixed(1);
  });
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("role", "img");
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
  };
  add("line", { class: "axis", x1: pad, y1: h - pad, x2: w - 4, y2: h - pad });
  add("path", { class: "line", d });
  add("text", { x: 2, y: 12 }, format(hi));
  add("text", { x: 2, y: h - pad }, format(lo));
  add("text", { x: pad, y: h - 8 }, points[0].day);
  add("text", { x: w - 70, y: h - 8 }, points[points.length - 1].day);
  box.replaceChildren(svg);
  box.setAttribute("data-last", String(vals[vals.length - 1]));
}

const windowRows = [
  ["Orders", (r) => fmt.int(r.orders)],
  ["Net revenue", (r, c) => fmt.money(r.net_revenue_minor, c)],
  ["Average order value", (r, c) => fmt.money(r.average_order_value_minor, c)],
  ["Refund rate", (r) => fmt.pct(r.refund_rate)],
  ["Active customers", (r) => fmt.int(r.active_customers)],
  ["Repurchase rate", (r) => fmt.pct(r.repurchase_rate)],
  ["Retention rate", (r) => fmt.pct(r.retention_rate)],
  ["Churn rate", (r) => fmt.pct(r.churn_rate)],
  ["New customers", (r) => fmt.int(r.new_customers)],
  ["Lapsed customers", (r) => fmt.int(r.lapsed_customers)],
  ["Entered HIGH risk", (r) => fmt.int(r.entered_high_risk)],
  ["NPS", (r) => fmt.num(r.nps)],
  ["Average CSAT", (r) => fmt.num(r.csat_average, 2)],
  ["Complaints per 1,000 active", (r) => fmt.num(r.complaints_per_1000_active)],
  ["Layer transition rate", (r) => fmt.pct(r.layer_transition_rate)],
];

async function load() {
  const o = await api("/api/v1/overview");
  const status = document.getElementById("status");
  if (o.reports.length === 0) {
    status.textContent = `Namespace ${o.namespace} has no KPIs yet: no event has been applied.`;
    return;
  }
  status.hidden = true;
  document.getElementById("asof").hidden = false;
  setText("namespace", o.namespace);
  setText("day", o.day);
  setText("final", o.final ? "final" : "not final yet");
  const byWindow = Object.fromEntries(o.reports.map((r) => [r.window_days, r]));
  const m = byWindow[30], q = byWindow[90], c = o.currency;
  setText("kpi-net-revenue", fmt.money(m.net_revenue_minor, c));
  setText("kpi-orders", fmt.int(m.orders));
  setText("kpi-aov", fmt.money(m.average_order_value_minor, c));
  setText("kpi-active", fmt.int(m.active_customers));
  setText("kpi-repurchase", fmt.pct(m.repurchase_rate));
  setText("kpi-retention", fmt.pct(m.retention_rate));
  setText("kpi-churn-rate", fmt.pct(m.churn_rate));
  setText("kpi-refund-rate", fmt.pct(m.refund_rate));
  setText("kpi-nps", fmt.num(q.nps));
  setText("kpi-csat", fmt.num(q.csat_average, 2));
  setText("kpi-complaints", fmt.num(m.complaints_per_1000_active));
  setText("kpi-customers", fmt.int(m.customers));

  const table = document.getElementById("windows");
  const head = table.querySelector("thead tr");
  head.replaceChildren(el("th", {}, "KPI"), ...o.reports.map((r) => el("th", { class: "num" }, r.window_days === 1 ? "day" : `${r.window_days} days`)));
  table.querySelector("tbody").replaceChildren(...windowRows.map(([name, cell]) =>
    el("tr", {}, el("th", {}, name), ...o.reports.map((r) => el("td", { class: "num" }, cell(r, c))))));

  bars("mix-tiers", m.tiers);
  bars("mix-churn", m.churn_levels);
  bars("mix-segments", m.segments);
  bars("mix-layers", m.value_layers);

  chart("chart-revenue", o.trend, (p) => p.net_revenue_minor / 100, (v) => Math.round(v).toLocaleString("en-US"));
  chart("chart-active", o.trend, (p) => p.active_customers, (v) => Math.round(v).toLocaleString("en-US"));
  chart("chart-retention", o.trend, (p) => p.retention_rate, (v) => fmt.pct(v));

  if (o.recent_error) {
    const e = document.querySelector('[data-testid="recent-error"]');
    e.textContent = "Recent events could not be read: " + o.recent_error;
    e.hidden = false;
  }
  document.querySelector('[data-testid="churn-alerts"] tbody').replaceChildren(...o.recent.churn_alerts.map((a) =>
    el("tr", {}, el("td", {}, fmt.time(a.occurred_at)), el("td", {}, customerLink(a.customer_id)),
      el("td", {}, `${a.from_level} → ${a.to_level}`), el("td", { class: "num" }, fmt.num(a.score, 3)),
      el("td", {}, a.reasons && a.reasons.length ? a.reasons[0].message : ""))));
  document.querySelector('[data-testid="actions"] tbody').replaceChildren(...o.recent.actions.map((a) =>
    el("tr", {}, el("td", {}, fmt.time(a.decided_at)), el("td", {}, customerLink(a.customer_id)), el("td", {}, a.kind),
      el("td", {}, a.outcome), el("td", {}, a.reason), el("td", {}, a.channel))));
  document.body.setAttribute("data-loaded", "true");
}

load().catch(showError);
