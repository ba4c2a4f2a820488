// A batch's DAG laid out left to right (dagre), drawn as SVG. Each job is a node whose
// data-state is its status (colour + icon); a layer with more than THRESHOLD jobs of one type
// is one node with per-status counts that expands on click, so a 10,000-job DAG draws a few
// dozen nodes. Statuses change in place: no re-layout on a live update. A job that another
// job of the batch submitted while it ran (parent_id) hangs off its parent by a dashed edge.

import dagre from "../vendor/dagre-3.1.3.esm.js";
import { FINAL, h, ICONS, num, STATUSES } from "./dom.js";

export const THRESHOLD = 12;
const NODE = { width: 176, height: 40 };
const GROUP = { width: 200, height: 62 };
const MAX_NODES = 600;
const MAX_LAYERS = 50; // columns left to right that still read at the frame's width

// What a job comes after in the batch: its dependencies, else the job that submitted it (a
// continuation, which waits for its siblings, is placed by them alone).
function upstream(j, byId) {
  const ups = (j.depends_on || []).filter((p) => byId.has(p));
  return !ups.length && j.parent_id && byId.has(j.parent_id) ? [j.parent_id] : ups;
}

// Each job's depth: the longest path to it from a job with no parent in the batch (Kahn's
// order, no recursion: a 10,000-long chain is as deep as a stack may not be).
function depths(jobs) {
  const byId = new Map(jobs.map((j) => [j.id, j]));
  const children = new Map();
  const waiting = new Map();
  for (const j of jobs) {
    const parents = upstream(j, byId);
    waiting.set(j.id, parents.length);
    for (const p of parents) {
      if (!children.has(p)) children.set(p, []);
      children.get(p).push(j.id);
    }
  }
  const depth = new Map();
  const ready = jobs.filter((j) => waiting.get(j.id) === 0).map((j) => j.id);
  for (const id of ready) depth.set(id, 0);
  for (let i = 0; i < ready.length; i++) {
    const id = ready[i];
    for (const c of children.get(id) || []) {
      depth.set(c, Math.max(depth.get(c) ?? 0, depth.get(id) + 1));
      waiting.set(c, waiting.get(c) - 1);
      if (waiting.get(c) === 0) ready.push(c);
    }
  }
  for (const j of jobs) if (!depth.has(j.id)) depth.set(j.id, 0); // unreachable: no cycles
  return depth;
}

// What a collapsed node shows: the most urgent status among its jobs.
export function summaryState(counts) {
  const urgent = ["failed", "running", "retrying", "ready", "blocked", "pending", "cancelled"];
  return urgent.find((s) => counts[s]) || "completed";
}

export class Dag {
  constructor(jobs, { onOpen, legend = null }) {
    this.jobs = new Map(jobs.map((j) => [j.id, j]));
    this.depth = depths(jobs);
    this.maxDepth = Math.max(0, ...this.depth.values());
    this.band = 1;
    this.expanded = new Set();
    this.onOpen = onOpen;
    this.svg = h("svg:svg", { class: "dag", role: "group", "aria-label": "Batch graph" });
    this.view = h("svg:g");
    this.svg.append(this.view);
    const zoom = (k) => () => { this.scale *= k; this.transform(); };
    this.el = h("div", { class: "dag-wrap" },
      h("div", { class: "dag-tools", role: "toolbar", "aria-label": "Graph view" }, legend,
        h("button", { type: "button", class: "ghost", onclick: () => this.fit() }, "Fit"),
        h("button", { type: "button", class: "ghost", "aria-label": "Zoom in",
          onclick: zoom(1.25) }, "+"),
        h("button", { type: "button", class: "ghost", "aria-label": "Zoom out",
          onclick: zoom(0.8) }, "−")),
      h("div", { class: "dag-frame", "data-testid": "dag" }, this.svg));
    this.frame = this.el.lastChild;
    // A node reached by Tab is brought into view.
    this.svg.addEventListener("focusin", (e) => this.reveal(e.target.closest(".node")));
    this.scale = 1; this.tx = 20; this.ty = 20;
    this.panZoom();
    this.layout();
  }

  // A group is a band of `band` layers (one, unless the DAG is too deep to draw) and a type.
  groupOf(job) { return `${Math.floor(this.depth.get(job.id) / this.band)}|${job.type}`; }

  // Which node each job is drawn in: itself, or its layer-and-type group. Wide layers
  // collapse first (the threshold halves); a DAG still too big (a long chain) then takes
  // layers in bands of 2, 4, 8… until it fits (at most MAX_LAYERS columns), once, before
  // anything is expanded.
  assign() {
    let sizes;
    let limit;
    const count = (lim) => [...sizes].reduce((n, [g, s]) =>
      n + (s > lim && !this.expanded.has(g) ? 1 : s), 0);
    for (;;) {
      sizes = new Map();
      for (const j of this.jobs.values()) {
        const g = this.groupOf(j);
        sizes.set(g, (sizes.get(g) || 0) + 1);
      }
      limit = THRESHOLD;
      while (count(limit) > MAX_NODES && limit > 1) limit = Math.floor(limit / 2);
      const fits = count(limit) <= MAX_NODES && (this.maxDepth + 1) / this.band <= MAX_LAYERS;
      if (fits || this.band > this.maxDepth || this.expanded.size) break;
      this.band *= 2;
    }
    this.node = new Map();
    this.members = new Map();
    for (const j of this.jobs.values()) {
      const g = this.groupOf(j);
      const key = sizes.get(g) > limit && !this.expanded.has(g) ? `g:${g}` : j.id;
      this.node.set(j.id, key);
      if (!this.members.has(key)) this.members.set(key, []);
      this.members.get(key).push(j.id);
    }
  }

  layout() {
    this.assign();
    const g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "LR", nodesep: 14, ranksep: 56, marginx: 8, marginy: 8 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const key of this.members.keys()) g.setNode(key, { ...(key.startsWith("g:") ? GROUP : NODE) }); // dagre writes x, y into it
    const edges = new Set();
    for (const j of this.jobs.values()) {
      for (const p of upstream(j, this.jobs)) {
        const [from, to] = [this.node.get(p), this.node.get(j.id)];
        const e = `${from}\u0000${to}`;
        const kind = (j.depends_on || []).includes(p) ? "depends" : "spawned";
        if (from !== to && !edges.has(e)) { edges.add(e); g.setEdge(from, to, { kind }); }
      }
    }
    dagre.layout(g);
    this.draw(g);
  }

  draw(g) {
    while (this.view.firstChild) this.view.firstChild.remove();
    const lines = h("svg:g", { class: "edges" });
    for (const e of g.edges()) {
      const pts = g.edge(e).points;
      const d = pts.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join("");
      const kind = g.edge(e).kind || "depends";
      lines.append(h("svg:path", { d, "data-from": e.v, "data-to": e.w, "data-kind": kind }));
    }
    this.view.append(lines);
    this.shapes = new Map();
    for (const key of g.nodes()) {
      const n = g.node(key);
      const shape = key.startsWith("g:") ? this.groupShape(key, n) : this.jobShape(key, n);
      this.shapes.set(key, shape);
      this.view.append(shape);
    }
    this.apply();
    this.size = g.graph();
    this.frame.dataset.nodes = String(g.nodeCount());
    this.frame.style.height = `${Math.max(200, Math.min(560, this.size.height + 60))}px`;
    requestAnimationFrame(() => this.fit());
  }

  transform() {
    this.view.setAttribute("transform", `translate(${this.tx},${this.ty}) scale(${this.scale})`);
  }

  // The whole graph in the frame (never enlarged, never below 0.25: then it pans).
  fit() {
    const fw = this.frame.clientWidth || 1000;
    const fh = this.frame.clientHeight || 560;
    const { width, height } = this.size;
    this.scale = Math.max(0.25, Math.min(1, (fw - 40) / width, (fh - 40) / height));
    this.tx = Math.max(20, (fw - width * this.scale) / 2);
    this.ty = Math.max(20, (fh - height * this.scale) / 2);
    this.transform();
  }

  reveal(shape) {
    if (!shape) return;
    const box = shape.getBoundingClientRect();
    const frame = this.frame.getBoundingClientRect();
    if (box.left >= frame.left && box.right <= frame.right && box.top >= frame.top &&
      box.bottom <= frame.bottom) return;
    this.tx += frame.left + frame.width / 2 - (box.left + box.width / 2);
    this.ty += frame.top + frame.height / 2 - (box.top + box.height / 2);
    this.transform();
  }

  jobShape(id, n) {
    const job = this.jobs.get(id);
    const x = n.x - n.width / 2;
    const y = n.y - n.height / 2;
    const a = h("svg:a", { href: `/ui/jobs/${id}`, class: "node", "data-job-id": id,
      "data-key": job.key || "", "aria-label": `${job.key || job.name}: ${job.status}` },
    h("svg:title", {}, `${job.key || job.name} (${job.type}) — ${job.status}`),
    h("svg:rect", { x, y, width: n.width, height: n.height, rx: 7 }),
    h("svg:text", { x: x + 12, y: n.y + 5, class: "icon" }, ""),
    h("svg:text", { x: x + 32, y: n.y + 5, class: "label" },
      clip(job.key || job.name, 18)));
    a.addEventListener("click", (e) => { e.preventDefault(); this.onOpen(id); });
    return a;
  }

  groupShape(key, n) {
    const [, type] = key.slice(2).split("|");
    const x = n.x - n.width / 2;
    const y = n.y - n.height / 2;
    const bar = h("svg:g", { class: "counts" });
    const g = h("svg:g", { class: "node group", role: "button", tabindex: 0, "data-group": key,
      "aria-label": `${this.members.get(key).length} ${type} jobs, collapsed; press to expand` },
    h("svg:title", {}, "Collapsed: click to expand"),
    h("svg:rect", { x, y, width: n.width, height: n.height, rx: 9 }),
    h("svg:text", { x: x + 12, y: y + 20, class: "icon" }, ""),
    h("svg:text", { x: x + 32, y: y + 20, class: "label" },
      `${num(this.members.get(key).length)} × ${clip(type, 14)}`),
    h("svg:text", { x: x + 12, y: y + 52, class: "sub" }, ""), bar);
    g.dataset.x = x; g.dataset.y = y;
    const open = () => { this.expanded.add(key.slice(2)); this.layout(); };
    g.addEventListener("click", open);
    g.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(); } });
    return g;
  }

  // Statuses onto the shapes (no layout), and the edges along which a failure cancelled.
  apply() {
    this.applyNodes();
    for (const path of this.view.querySelectorAll(".edges path")) {
      const from = this.shapes.get(path.dataset.from)?.getAttribute("data-state");
      const to = this.shapes.get(path.dataset.to)?.getAttribute("data-state");
      const cut = (from === "failed" || from === "cancelled") && to === "cancelled";
      path.setAttribute("class", cut ? "cut" : "");
    }
  }

  applyNodes() {
    for (const [key, shape] of this.shapes) {
      const ids = this.members.get(key);
      if (!key.startsWith("g:")) {
        const job = this.jobs.get(ids[0]);
        shape.setAttribute("data-state", job.status);
        shape.setAttribute("class", `node s-${job.status}`);
        shape.querySelector(".icon").textContent = ICONS[job.status];
        shape.setAttribute("aria-label", `${job.key || job.name}: ${job.status}`);
        continue;
      }
      const counts = {};
      for (const id of ids) { const s = this.jobs.get(id).status; counts[s] = (counts[s] || 0) + 1; }
      const state = summaryState(counts);
      shape.setAttribute("data-state", state);
      shape.setAttribute("data-counts", JSON.stringify(counts));
      shape.setAttribute("class", `node group s-${state}`);
      shape.querySelector(".icon").textContent = ICONS[state];
      const done = ids.filter((id) => FINAL.has(this.jobs.get(id).status)).length;
      shape.querySelector(".sub").textContent = STATUSES.filter((s) => counts[s])
        .map((s) => `${ICONS[s]}${num(counts[s])}`).join(" ") + `  (${num(done)} done)`;
      const bar = shape.querySelector(".counts");
      while (bar.firstChild) bar.firstChild.remove();
      let left = Number(shape.dataset.x) + 12;
      const width = GROUP.width - 24;
      for (const s of STATUSES) {
        if (!counts[s]) continue;
        const w = (width * counts[s]) / ids.length;
        bar.append(h("svg:rect", { x: left, y: Number(shape.dataset.y) + 30, width: w, height: 8,
          class: `seg s-${s}` }));
        left += w;
      }
    }
  }

  update(id, status) {
    const job = this.jobs.get(id);
    if (!job) return;
    job.status = status;
    if (!this.pending) {
      this.pending = requestAnimationFrame(() => { this.pending = null; this.apply(); });
    }
  }

  panZoom() {
    const set = () => this.transform();
    this.svg.addEventListener("wheel", (e) => {
      e.preventDefault();
      const k = Math.exp(-e.deltaY / 500);
      const r = this.svg.getBoundingClientRect();
      const mx = e.clientX - r.left; const my = e.clientY - r.top;
      this.tx = mx - (mx - this.tx) * k; this.ty = my - (my - this.ty) * k;
      this.scale *= k; set();
    }, { passive: false });
    let drag = null;
    this.svg.addEventListener("pointerdown", (e) => {
      if (e.target.closest(".node")) return;
      drag = { x: e.clientX - this.tx, y: e.clientY - this.ty };
      this.svg.setPointerCapture(e.pointerId);
    });
    this.svg.addEventListener("pointermove", (e) => {
      if (!drag) return;
      this.tx = e.clientX - drag.x; this.ty = e.clientY - drag.y; set();
    });
    this.svg.addEventListener("pointerup", () => { drag = null; });
  }
}

function clip(text, n) {
  const s = String(text);
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}
