// Overview: jobs by status and priority (the scheduler's queue monitoring), a per-minute chart
// of submitted / completed / failed, oldest ready wait, workers' capacity, recent failures.

import { all, ApiError, get, query } from "../api.js";
import { ago, badge, card, duration, empty, h, jobLink, link, num, STATUSES } from "../dom.js";
import { Stream } from "../stream.js";
import { workerCards } from "./workers.js";

const MINUTES = 30;
const SERIES = [["submitted", "Submitted"], ["completed", "Completed"], ["failed", "Failed"]];
const PRIORITY = { 10: "critical", 8: "high", 5: "normal", 2: "low" };

function minute(ts) { return Math.floor(new Date(ts).getTime() / 60000); }

function chart(buckets) {
  const now = Math.floor(Date.now() / 60000);
  const cols = Array.from({ length: MINUTES }, (_, i) => now - MINUTES + 1 + i);
  const max = Math.max(1, ...cols.flatMap((m) => SERIES.map(([s]) => buckets[s].get(m) || 0)));
  const W = 720; const H = 160; const col = W / MINUTES; const bw = (col - 4) / 3;
  const svg = h("svg:svg", { viewBox: `0 0 ${W} ${H + 18}`, class: "chart", role: "img",
    "aria-label": `Jobs per minute over the last ${MINUTES} minutes` });
  cols.forEach((m, i) => {
    SERIES.forEach(([s], k) => {
      const v = buckets[s].get(m) || 0;
      const bh = (v / max) * H;
      svg.append(h("svg:rect", { x: i * col + 2 + k * bw, y: H - bh, width: bw - 1,
        height: Math.max(bh, v ? 1 : 0), class: `c-${s}` },
      h("svg:title", {}, `${new Date(m * 60000).toLocaleTimeString()}: ${v} ${s}`)));
    });
  });
  for (const [i, anchor] of [[0, "start"], [MINUTES / 2, "middle"], [MINUTES - 1, "end"]]) {
    svg.append(h("svg:text", { x: anchor === "end" ? W - 2 : i * col + 2, y: H + 14,
      class: "axis", "text-anchor": anchor },
      new Date(cols[i] * 60000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false })));
  }
  svg.append(h("svg:text", { x: 2, y: 10, class: "axis" },
    `max ${num(max)}/min`));
  return h("div", {}, h("div", { class: "chart-legend" }, SERIES.map(([s, label]) =>
    h("span", { class: `key c-${s}` }, label))), svg);
}

export async function render(main) {
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Overview")));
  const tiles = h("div", { class: "tiles", "data-testid": "status-tiles" },
    h("p", { class: "muted" }, "Waiting for the scheduler's figures…"));
  const queue = h("div", { class: "muted" }, "—");
  const chartBox = h("div");
  const workersBox = h("div");
  const failuresBox = h("div");
  main.append(h("div", { class: "overview" },
    card("Jobs by status", tiles, queue),
    card("Per minute", chartBox),
    card("Workers", workersBox),
    card("Recent failures", failuresBox)));

  const since = new Date(Date.now() - MINUTES * 60000).toISOString();
  const recent = await all("/jobs", { created_after: since }, 5000);
  const buckets = { submitted: new Map(), completed: new Map(), failed: new Map() };
  const bump = (s, ts) => buckets[s].set(minute(ts), (buckets[s].get(minute(ts)) || 0) + 1);
  const seen = new Set();
  for (const j of recent) {
    seen.add(j.id);
    bump("submitted", j.created_at);
    if (j.status === "completed" || j.status === "failed") bump(j.status, j.finished_at);
  }
  const drawChart = () => empty(chartBox).append(chart(buckets));
  drawChart();

  const failed = await get(`/jobs${query({ status: "failed", limit: 8 })}`);
  empty(failuresBox).append(failed.items.length ? h("ul", { class: "links" }, failed.items.map((j) =>
    h("li", {}, jobLink(j.id, j.name), " ", h("span", { class: "muted" }, ago(j.finished_at)),
      " ", h("span", { class: "error-text" }, j.error || "")))) : h("p", { class: "muted" },
    "None."), link("/ui/dead-letters", "All dead letters →"));

  let monitor = true;
  const loadWorkers = async () => {
    try { empty(workersBox).append(workerCards(await get("/workers"))); }
    catch (e) {
      if (!(e instanceof ApiError && e.status === 403)) throw e;
      monitor = false;
      empty(workersBox).append(h("p", { class: "muted" }, "Needs the monitor scope."));
    }
  };
  await loadWorkers();
  if (!monitor) empty(tiles).append(h("p", { class: "muted" }, "Needs the monitor scope."));

  const types = ["job.status", ...(monitor ? ["monitoring.queue", "monitoring.resource"] : [])];
  const stream = new Stream({ type: types });
  let chartDue = 0;
  stream.on("job.status", (e) => {
    if (e.snapshot) return;
    if (!seen.has(e.job_id) && e.attempt === 0) { seen.add(e.job_id); bump("submitted", e.ts); }
    if (e.status === "completed" || e.status === "failed") bump(e.status, e.ts);
    if (!chartDue) chartDue = setTimeout(() => { chartDue = 0; drawChart(); }, 1000);
  });
  stream.on("monitoring.queue", (e) => {
    empty(tiles).append(...STATUSES.map((s) => h("a", { href: `/ui/jobs?status=${s}`, "data-link": true,
      class: `tile s-${s}`, "data-status": s }, h("span", { class: "n" }, num(e.jobs_by_status[s] || 0)),
    badge(s))));
    const ready = Object.entries(e.ready_by_priority).sort((a, b) => b[0] - a[0])
      .map(([p, n]) => `${PRIORITY[p] || p}: ${num(n)}`).join(" · ");
    empty(queue).append(h("p", {}, "Ready by priority: ", ready || "none", " · oldest ready wait ",
      h("strong", {}, e.oldest_ready_wait_seconds === null ? "—"
        : duration(e.oldest_ready_wait_seconds))));
  });
  let last = 0;
  stream.on("monitoring.resource", () => {
    if (Date.now() - last > 2000) { last = Date.now(); loadWorkers(); }
  });
  const tick = setInterval(drawChart, 30000);
  return () => { stream.close(); clearInterval(tick); clearTimeout(chartDue); };
}
