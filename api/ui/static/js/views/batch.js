// A batch: its report (totals, start, end, duration, failures with errors) above its DAG,
// recoloured live from the stream.

import { get, query } from "../api.js";
import { advances, badge, between, card, duration, empty, FINAL, h, iso, jobLink, link, micros,
  num, STATUSES, when } from "../dom.js";
import { Dag } from "../dag.js";
import { navigate } from "../main.js";
import { Stream } from "../stream.js";

const SLICES = 4;

// Every job of the batch. After its first page, the rest of its time span (jobs of a batch
// are created a microsecond apart) is cut into SLICES half-open ranges of created_at, each
// read as its own keyset chain of GET /jobs?batch_id=…&created_after=…&created_before=…, all
// at once: a 10,000-job DAG in a handful of round trips instead of twenty in a row.
async function wholeBatch(id) {
  const [first, newest] = await Promise.all([
    get(`/batches/${id}?limit=500`),
    get(`/jobs${query({ batch_id: id, limit: 1 })}`),
  ]);
  const byId = new Map(first.jobs.map((j) => [j.id, j]));
  if (!first.next_cursor || !newest.items.length) return { report: first, jobs: [...byId.values()] };
  const lo = micros(first.jobs[first.jobs.length - 1].created_at);
  const hi = micros(newest.items[0].created_at) + 1n;
  const step = (hi - lo) / BigInt(SLICES) + 1n;
  const chain = async (from, to) => {
    let cursor = null;
    do {
      const page = await get(`/jobs${query({ batch_id: id, created_after: iso(from),
        created_before: iso(to), limit: 500, cursor })}`);
      for (const j of page.items) if (!byId.has(j.id)) byId.set(j.id, j);
      cursor = page.next_cursor;
    } while (cursor);
  };
  await Promise.all(Array.from({ length: SLICES }, (_, i) => {
    const to = lo + step * BigInt(i + 1);
    return chain(lo + step * BigInt(i), to < hi ? to : hi);
  }));
  return { report: first, jobs: [...byId.values()] };
}

function totalsOf(jobs) {
  const t = Object.fromEntries(STATUSES.map((s) => [s, 0]));
  for (const j of jobs.values()) t[j.status] += 1;
  return t;
}

function reportCard(report, jobs) {
  const totals = totalsOf(jobs);
  const done = [...jobs.values()].every((j) => FINAL.has(j.status));
  const starts = [...jobs.values()].map((j) => j.started_at).filter(Boolean).sort();
  const ends = [...jobs.values()].map((j) => j.finished_at).filter(Boolean).sort();
  const start = starts[0] || report.started_at;
  const end = done ? (ends[ends.length - 1] || report.finished_at) : null;
  const failed = [...jobs.values()].filter((j) => j.status === "failed");
  return card(null,
    h("div", { class: "totals", "data-testid": "batch-totals", "data-done": String(done) },
      h("div", { class: "total" }, h("span", { class: "n" }, num(jobs.size)), h("span", {}, "jobs")),
      STATUSES.filter((s) => totals[s]).map((s) => h("div", { class: `total s-${s}`,
        "data-status": s }, h("span", { class: "n" }, num(totals[s])), badge(s))),
      h("div", { class: "total" }, h("span", { class: "n" }, when(start)), h("span", {}, "started")),
      h("div", { class: "total" }, h("span", { class: "n" }, end ? when(end) : "—"),
        h("span", {}, "ended")),
      h("div", { class: "total" }, h("span", { class: "n" },
        start ? duration(between(start, end)) : "—"), h("span", {}, done ? "took" : "so far"))),
    failed.length ? h("details", { class: "failures", open: failed.length <= 5 },
      h("summary", {}, `${failed.length} failed`),
      h("ul", {}, failed.slice(0, 50).map((j) => h("li", {}, jobLink(j.id, j.key || j.name),
        " ", h("span", { class: "error-text" }, j.error || ""))))) : null);
}

export async function render(main, id) {
  const started = performance.now();
  const { report, jobs: list } = await wholeBatch(id);
  const jobs = new Map(list.map((j) => [j.id, j]));
  const reportBox = h("div");
  main.append(h("div", { class: "page-head" }, h("div", {},
    h("p", { class: "crumbs" }, link("/ui/batches", "Batches"), " / ", h("code", {}, id)),
    h("h1", {}, report.name || "Batch")),
  h("div", { class: "actions" }, link(`/ui/jobs?batch_id=${id}`, "As a table"))), reportBox);
  const legend = h("p", { class: "legend", "aria-label": "Statuses" },
    STATUSES.map((s) => badge(s)));
  const dag = new Dag(list, { onOpen: (jobId) => navigate(`/ui/jobs/${jobId}`), legend });
  main.append(card("Graph", dag.el));
  main.dataset.interactiveMs = String(Math.round(performance.now() - started));
  let drawn = 0;
  const redraw = () => {
    if (drawn) return;
    drawn = requestAnimationFrame(() => { drawn = 0; empty(reportBox).append(reportCard(report, jobs)); });
  };
  redraw();

  const stream = new Stream({ batch_id: [id], type: ["job.status"] });
  stream.on("job.status", (e) => {
    const job = jobs.get(e.job_id);
    if (!job || !advances(job.status, e.status, e.snapshot)) return;
    job.status = e.status;
    if (e.error) job.error = e.error;
    if (e.status === "running" && !job.started_at) job.started_at = e.ts;
    if (FINAL.has(e.status)) job.finished_at = e.ts;
    dag.update(e.job_id, e.status);
    redraw();
  });
  return () => stream.close();
}
