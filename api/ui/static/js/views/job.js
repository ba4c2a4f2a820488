// One job: its fields, links to what it waits on and what waits on it, its attempts as a
// timeline, why it waits, cancel/retry, and a live log tail.

import { cancelJobs, retryJobs } from "../actions.js";
import { get, query } from "../api.js";
import { badge, between, card, duration, empty, FINAL, h, jobLink, link, put, when } from "../dom.js";
import { LogView } from "../logview.js";
import { navigate } from "../main.js";
import { Stream } from "../stream.js";

async function logPages(id, onPage, from = null, attempt = null) {
  let after = from;
  let attempts = [];
  do {
    const page = await get(`/jobs/${id}/logs${query({ after, attempt, limit: 5000 })}`);
    attempts = page.attempts;
    onPage(page.lines);
    after = page.next_after;
  } while (after);
  return attempts;
}

const WINDOW = 5000;
const LANES = 4;

// The whole stored log, read LANES windows at a time: seqs are contiguous from 1 in each
// attempt, so window k of an attempt is `attempt=a&after=k*WINDOW`, and windows can be read
// at once (a million lines in 200 sequential pages took 47 s). Windows are handed to the view
// in order; an attempt ends at its first short window.
async function storedLog(id, onLines) {
  const head = await get(`/jobs/${id}/logs${query({ limit: 1 })}`);
  for (const { attempt } of head.attempts) {
    const done = new Map();
    let next = 0; let flushed = 0; let end = Infinity;
    const lane = async () => {
      while (next < end) {
        const k = next++;
        const page = await get(`/jobs/${id}/logs${query({ attempt, after: k * WINDOW,
          limit: WINDOW })}`);
        if (page.lines.length < WINDOW) end = Math.min(end, k + 1);
        done.set(k, page.lines);
        while (done.has(flushed)) { onLines(done.get(flushed)); done.delete(flushed); flushed++; }
      }
    };
    await Promise.all(Array.from({ length: LANES }, lane));
  }
  return (await get(`/jobs/${id}/logs${query({ limit: 1 })}`)).attempts;
}

function fields(job) {
  const rows = [
    ["Type", job.type], ["Priority", String(job.priority)],
    ["Resources", `${job.cpu_units} cpu · ${job.memory_mb} MB` + (job.memory_escalated_mb
      ? ` (raised to ${job.memory_escalated_mb} MB after ${job.memory_escalations} memory kill(s))`
      : "")],
    // A retry from the dead letters gives a fresh budget while attempt numbers keep growing.
    ["Attempts", `${job.attempts} (at most ${job.retry.max_attempts} a run)`],
    ["Retry", `after ${job.retry.initial_delay_seconds} s × ${job.retry.backoff_multiplier}^(n−1)`],
    ["Timeout", job.timeout_seconds ? `${job.timeout_seconds} s` : "none"],
    ["Run at", job.run_at ? when(job.run_at) : "—"],
    ["Created", when(job.created_at)], ["Started", when(job.started_at)],
    ["Finished", when(job.finished_at)],
    ["Duration", duration(job.started_at && between(job.started_at, job.finished_at))],
    ["Worker", job.worker_id || "—"],
    ["Batch", job.batch_id ? link(`/ui/batches/${job.batch_id}`, h("code", {}, job.batch_id)) : "—"],
    ["Parent", job.parent_id ? jobLink(job.parent_id, job.parent_id) : "—"],
    ["Children", link(`/ui/jobs?parent_id=${job.id}`, "jobs it submitted")],
    ["Tenant", job.tenant], ["Idempotency key", job.idempotency_key || "—"],
  ];
  return h("dl", { class: "fields" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function related(title, ids, testid) {
  if (!ids.length) return card(title, h("p", { class: "muted" }, "none"));
  const item = (i) => h("li", {}, jobLink(i, i));
  const list = h("ul", { class: "links", "data-testid": testid }, ids.slice(0, 10).map(item));
  const rest = ids.length > 10 ? h("details", {}, h("summary", {}, `${ids.length - 10} more`),
    h("ul", { class: "links" }, ids.slice(10).map(item))) : null;
  return card(`${title} (${ids.length})`, list, rest);
}

export function timeline(attempts) {
  if (!attempts.length) return h("p", { class: "muted" }, "No attempt yet.");
  const starts = attempts.map((a) => new Date(a.started_at || Date.now()).getTime());
  const ends = attempts.map((a) => new Date(a.finished_at || Date.now()).getTime());
  const t0 = Math.min(...starts);
  const span = Math.max(1, Math.max(...ends) - t0);
  return h("ol", { class: "timeline", "aria-label": "Attempts" }, attempts.map((a, i) => {
    const left = ((starts[i] - t0) / span) * 100;
    const width = Math.max(0.8, ((ends[i] - starts[i]) / span) * 100);
    const outcome = a.outcome || (a.finished_at ? "ended" : "running");
    return h("li", { class: "attempt", "data-outcome": outcome },
      h("div", { class: "attempt-head" }, h("strong", {}, `#${a.attempt}`),
        h("span", {}, a.worker_id || "—"), h("span", {}, when(a.started_at)),
        h("span", {}, duration(a.duration_seconds ?? between(a.started_at, a.finished_at))),
        h("span", {}, `${a.memory_mb} MB` + (a.peak_memory_mb ? ` (peak ${a.peak_memory_mb})` : "")),
        h("span", { class: `outcome o-${outcome}`, "data-failure": a.failure_class || "" },
          a.failure_class ? `${outcome}: ${a.failure_class}` : outcome)),
      h("div", { class: "track" }, h("div", { class: `span o-${outcome}`,
        style: { left: `${left}%`, width: `${width}%` } })),
      a.error ? h("pre", { class: "error-text" }, a.error) : null);
  }));
}

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export async function render(main, id) {
  let job = await get(`/jobs/${id}`);
  const head = h("div", { class: "page-head" });
  const body = h("div", { class: "job-grid" });
  const attemptsBox = h("div");
  let complete = false;
  const logs = new LogView({ onDownload: async () => {
    if (!complete) {
      const whole = new LogView({});
      await storedLog(id, (lines) => whole.add(lines));
      return download(`${id}.log`, whole.text());
    }
    return download(`${id}.log`, logs.text());
  } });
  // The attempts and the log stay in the page while the rest is redrawn: a scroll box taken
  // out of the document loses its position, which the log took for the reader scrolling up.
  const info = h("div");
  const side = h("div", { class: "col side" });
  body.append(h("div", { class: "col" }, info, card("Attempts", attemptsBox), card("Log", logs.el)),
    side);
  main.append(head, body);

  const draw = () => {
    empty(head).append(
      h("div", {}, h("p", { class: "crumbs" }, link("/ui/jobs", "Jobs"), " / ",
        h("code", {}, id)), h("h1", {}, job.name, " ", h("span", { "data-testid": "job-status" },
        badge(job.status)))),
      h("div", { class: "actions" },
        FINAL.has(job.status) ? null : h("button", { type: "button", "data-action": "cancel",
          onclick: async () => { if (await cancelJobs([id])) refresh(); } }, "Cancel…"),
        job.status === "failed" ? h("button", { type: "button", class: "primary",
          "data-action": "retry", onclick: async () => {
            // It runs again: draw the view anew, live (a finished job's view has no stream).
            if (await retryJobs([id], true)) navigate(location.href, true);
          } }, "Retry…") : null));
    put(info,
      job.waiting_reason ? card(job.status === "running" ? "Where it runs" : "Why it waits",
        h("p", { class: "reason", "data-testid": "waiting-reason" }, job.waiting_reason)) : null,
      job.status_reason && !job.waiting_reason // the waiting reason says it better while it waits
        ? card("Status", h("p", { class: "reason" }, job.status_reason)) : null,
      job.progress ? card("Progress", h("progress", { max: 1, value: job.progress.fraction }),
        h("span", {}, ` ${Math.round(job.progress.fraction * 100)}% `,
          job.progress.message || "")) : null,
      job.error ? card("Error", h("pre", { class: "error-text" }, job.error)) : null);
    put(side,
      card("Fields", fields(job)),
      related("Depends on", job.depends_on || [], "depends-on"),
      related("Dependents", job.dependents || [], "dependents"),
      card("Payload", h("pre", {}, JSON.stringify(job.payload, null, 2))),
      job.result !== null && job.result !== undefined
        ? card("Result", h("pre", {}, JSON.stringify(job.result, null, 2))) : null);
  };
  let pending = null;
  const refresh = () => {
    clearTimeout(pending);
    pending = setTimeout(async () => {
      job = await get(`/jobs/${id}`);
      draw();
      logs.schedule();
      const page = await get(`/jobs/${id}/logs${query({ limit: 1 })}`);
      empty(attemptsBox).append(timeline(page.attempts));
      logs.setAttempts(page.attempts.map((a) => a.attempt));
    }, 150);
  };
  draw();

  if (FINAL.has(job.status)) { // a finished log is fetched once, and never followed
    const attempts = await storedLog(id, (lines) => logs.add(lines));
    complete = true;
    empty(attemptsBox).append(timeline(attempts));
    logs.setAttempts(attempts.map((a) => a.attempt));
    return null;
  }
  // Subscribe before reading the history; lines that arrive meanwhile wait, and overlaps
  // are dropped by (attempt, seq).
  const early = [];
  let loaded = false;
  const stream = new Stream({ job_id: [id] });
  // Lines missing between the history and the stream are read again once the logger has
  // stored them (at the latest when the attempt ends: its lines are stored before that).
  let backfilling = null;
  const backfill = (delay = 300) => {
    if (backfilling || !logs.gaps().length) return;
    backfilling = setTimeout(async () => {
      for (const gap of logs.gaps()) {
        await logPages(id, (lines) => logs.add(lines), String(gap.after), gap.attempt);
      }
      backfilling = null;
      if (logs.gaps().length) backfill(1000);
    }, delay);
  };
  stream.on("job.log", (e) => {
    if (!loaded) { early.push(e); return; }
    logs.add([e]);
    backfill();
  });
  stream.on("stream.dropped", () => backfill());
  stream.on("job.status", (e) => {
    if (e.status !== job.status || !e.snapshot) refresh();
    if (e.status !== "running") backfill(0);
  });
  stream.on("job.progress", () => refresh());
  stream.on("stream.open", async (e) => { // lines sent while the socket was down
    if (!e.reconnect) return;
    refresh();
    const attempt = Math.max(0, ...logs.upto.keys());
    const from = attempt ? `${attempt}:${logs.upto.get(attempt)}` : null;
    await logPages(id, (lines) => logs.add(lines), from);
    backfill(0);
  });
  const attempts = await storedLog(id, (lines) => logs.add(lines));
  loaded = true;
  logs.add(early);
  backfill();
  empty(attemptsBox).append(timeline(attempts));
  logs.setAttempts(attempts.map((a) => a.attempt));
  return () => { stream.close(); clearTimeout(pending); clearTimeout(backfilling); };
}
