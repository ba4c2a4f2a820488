// Small helpers: elements without innerHTML (no markup from data ever reaches the parser),
// formatting, and how each status looks (a colour and an icon, so colour is never the only cue).

export function h(tag, attrs = {}, ...children) {
  const svg = tag.startsWith("svg:");
  const el = svg
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export const STATUSES = [
  "pending", "blocked", "ready", "running", "retrying", "completed", "failed", "cancelled",
];
export const FINAL = new Set(["completed", "failed", "cancelled"]);
// Monotone order of statuses, as the stream promises (a late snapshot never moves one back).
const ORDER = { pending: 0, blocked: 1, ready: 2, running: 3, retrying: 3, completed: 9,
  failed: 9, cancelled: 9 };
// A final job moves again only when it is resubmitted (a retry: back to pending or blocked).
export function advances(from, to, snapshot = false) {
  if (!from || from === to) return true;
  if (FINAL.has(from)) return !snapshot && (to === "pending" || to === "blocked");
  return ORDER[to] >= ORDER[from] || (from === "retrying" && to === "ready");
}

export const ICONS = {
  pending: "○", blocked: "◌", ready: "◔", running: "▶", retrying: "↻",
  completed: "✓", failed: "✕", cancelled: "⊘",
};

export function badge(status) {
  return h("span", { class: `badge s-${status}`, "data-state": status },
    h("span", { class: "icon", "aria-hidden": "true" }, ICONS[status] || "•"), " ", status);
}

export function short(id) { return String(id).slice(0, 8); }

export function when(ts) {
  if (!ts) return "—";
  const d = new Date(ts);
  return d.toLocaleString(undefined, { hour12: false, month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function ago(ts) {
  if (!ts) return "—";
  const s = Math.max(0, (Date.now() - new Date(ts).getTime()) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

// A timestamp as microseconds since the epoch (the API's are ISO 8601, to the microsecond).
export function micros(ts) {
  const m = String(ts).match(/^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/);
  return BigInt(Date.parse(m[1] + m[3])) * 1000n + BigInt((m[2] || "").padEnd(6, "0").slice(0, 6));
}

export function iso(us) {
  const text = new Date(Number(us / 1000n)).toISOString();
  return text.replace("Z", `${String(us % 1000n).padStart(3, "0")}Z`);
}

export function between(a, b) {
  if (!a) return null;
  return ((b ? new Date(b) : new Date()) - new Date(a)) / 1000;
}

export function num(n) { return Number(n).toLocaleString("en-US"); }

export function link(href, ...children) {
  return h("a", { href, "data-link": true }, ...children);
}

export function jobLink(id, label) {
  return link(`/ui/jobs/${id}`, h("code", {}, label || short(id)));
}

export function bar(used, total, label) {
  const pct = total ? Math.min(100, (100 * used) / total) : 0;
  const level = pct >= 90 ? "high" : pct >= 60 ? "mid" : "low";
  return h("div", { class: "bar", role: "meter", "aria-valuemin": 0, "aria-valuemax": total,
    "aria-valuenow": used, "aria-label": label, title: `${label}: ${used} of ${total}` },
    h("div", { class: `fill ${level}`, style: { width: `${pct}%` } }),
    h("span", { class: "bar-text" }, `${num(used)} / ${num(total)}`));
}

export function toast(message, kind = "info") {
  let box = document.getElementById("toasts");
  if (!box) {
    box = h("div", { id: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(box);
  }
  const t = h("div", { class: `toast ${kind}` }, message);
  box.append(t);
  setTimeout(() => t.remove(), 5000);
}

export function confirmDialog(text, okLabel = "Confirm") {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

export function empty(el) { while (el.firstChild) el.firstChild.remove(); return el; }

// Replace an element's children; null and false children are left out (as in h()).
export function put(el, ...children) { append(empty(el), children); return el; }

export function card(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...children);
}
