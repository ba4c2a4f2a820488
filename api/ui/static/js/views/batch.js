// A batch: its report (totals, start, end, duration, failures with errors) above its DAG,
// recoloured live from the stream.

import { get, query } from "../api.js";
import { advances, badge, between, card, duration, empty, FINAL, h, jobLink, link, num, STATUSES,
  when } from "../dom.js";
import { Dag } from "../dag.js";
import { navigate } from "../main.js";
import { Stream } from "../stream.js";

// Every job of the batch. Two cursor chains run at once from both ends of the same order —
// the batch's pages oldest first, and GET /jobs?batch_id= newest first — and stop where they
// meet: each is a contiguous run of (created_at, id), so one job seen by both means that
// together they hold every job. Half the round trips of one chain for a 10,000-job DAG.
async function wholeBatch(id) {
  const first = await get(`/batches/${id}?limit=500`);
  const byId = new Map(first.jobs.map((j) => [j.id, j]));
  let met = !first.next_cursor;
  const take = (jobs) => {
    for (const j of jobs) {
      if (byId.has(j.id)) met = true; else byId.set(j.id, j);
    }
  };
  const forward = async () => {
    let cursor = first.next_cursor;
    while (cursor && !met) {
      const page = await get(`/batches/${id}${query({ limit: 500, cursor })}`);
      take(page.jobs);
      cursor = page.next_cursor;
    }
    met = true;
  };
  const backward = async () => {
    let cursor = null;
    while (!met) {
      const page = await get(`/jobs${query({ batch_id: id, limit: 500, cursor })}`);
      take(page.items);
      cursor = page.next_cursor;
      if (!cursor) met = true;
    }
  };
  await Promise.all([forward(), backward()]);
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
