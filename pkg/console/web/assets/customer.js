// The customer page, for support: GET /api/v1/customers/{id}.
"use strict";

async function load() {
  const id = new URLSearchParams(location.search).get("id") || "";
  document.getElementById("search-id").value = id;
  if (!id) {
    document.getElementById("status").textContent = "Enter a customer id.";
    return;
  }
  const c = await api("/api/v1/customers/" + encodeURIComponent(id));
  const p = c.profile;
  document.getElementById("status").hidden = true;
  document.getElementById("customer").hidden = false;
  document.title = `Customer ${p.customer_id} · Loyalty console`;
  setText("customer-id", p.customer_id);
  setText("tier", p.tier);
  setText("tier-why", p.tier_why);
  setText("churn-level", p.churn_level);
  setText("churn-score", fmt.num(p.churn_score, 3));
  setText("churn-model", p.churn_model);
  setText("segment", p.segment_name || "none yet");
  setText("value-layer", p.value_layer || "none yet");
  setText("rfm", `R${p.rfm.R} F${p.rfm.F} M${p.rfm.M}`);
  if (p.rfm_values) {
    setText("rfm-values", `${fmt.num(p.rfm_values.RecencyDays, 0)} days since, ${fmt.num(p.rfm_values.Frequency, 0)} purchase days, ${fmt.money(p.rfm_values.MonetaryMinor)}`);
  }
  setText("clv", fmt.money(p.clv_minor));
  setText("p-alive", p.p_alive === undefined || p.p_alive === null ? "– (rules fallback)" : fmt.num(p.p_alive, 3));
  setText("net-spend", fmt.money(p.net_spend_365d_minor));
  setText("open-complaints", fmt.int(p.open_complaints));
  setText("evaluated-through", p.evaluated_through || "–");
  setText("last-event", fmt.time(p.last_event_at));
  document.querySelector('[data-testid="churn-reasons"]').replaceChildren(...p.churn_reasons.map((r) =>
    el("li", {}, el("strong", {}, r.code), ": " + r.message)));
  if (p.churn_reasons.length === 0) {
    document.querySelector('[data-testid="churn-reasons"]').append(el("li", {}, "no risk signal"));
  }
  document.querySelector('[data-testid="transitions"] tbody').replaceChildren(...c.transitions.map((t) =>
    el("tr", { "data-event-id": t.event_id }, el("td", {}, fmt.time(t.at)),
      el("td", {}, t.kind + (t.direction ? " " + t.direction : "")),
      el("td", {}, t.kind === "segment" ? `${t.from} / ${t.from_layer}` : t.from),
      el("td", {}, t.kind === "segment" ? `${t.to} / ${t.to_layer}` : t.to),
      el("td", {}, t.reasons.map((r) => r.message).join("; ")))));
  document.querySelector('[data-testid="decisions"] tbody').replaceChildren(...c.actions.map((a) =>
    el("tr", {}, el("td", {}, fmt.time(a.decided_at)), el("td", {}, a.kind), el("td", {}, a.outcome), el("td", {}, a.reason),
      el("td", {}, a.channel), el("td", { class: "num" }, fmt.int(a.attempts)))));
  document.body.setAttribute("data-loaded", "true");
}

load().catch(showError);
