// Shared helpers of the console pages: formatting and the JSON API.
"use strict";

const fmt = {
  int: (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US")),
  money: (minor, currency) =>
    minor === null || minor === undefined
      ? "–"
      : (minor / 100).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }) + (currency ? " " + currency : ""),
  pct: (r) => (r === null || r === undefined ? "–" : (100 * r).toFixed(1) + "%"),
  num: (v, digits) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits === undefined ? 1 : digits)),
  time: (iso) => (iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC") : "–"),
};

async function api(path) {
  const res = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  const body = await res.json().catch(() => ({ error: res.statusText }));
  if (!res.ok) {
    throw new Error(body.error || res.statusText);
  }
  return body;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    e.append(c instanceof Node ? c : document.createTextNode(c === null || c === undefined ? "" : String(c)));
  }
  return e;
}

function setText(testid, text) {
  const e = document.querySelector(`[data-testid="${testid}"]`);
  if (e) e.textContent = text;
  return e;
}

function customerLink(id) {
  return el("a", { href: "/customer?id=" + encodeURIComponent(id) }, id);
}

function showError(err) {
  const s = document.getElementById("status");
  s.textContent = err.message;
  s.className = "status error";
  s.hidden = false;
}
