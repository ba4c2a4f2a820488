// Workers: capacity and use as bars, state, last heartbeat, running jobs; refreshed on the
// scheduler's resource monitoring.

import { ApiError, get } from "../api.js";
import { ago, bar, card, duration, empty, h, jobLink, num } from "../dom.js";
import { Stream } from "../stream.js";

export function workerCards(list, running = new Map()) {
  if (!list.length) return h("p", { class: "muted" }, "No worker has registered yet.");
  return h("div", { class: "workers" }, list.map((w) => h("article", { class: "worker",
    "data-worker-id": w.id, "data-state": w.state },
  h("header", {}, h("h3", {}, w.id), h("span", { class: `wstate w-${w.state}` }, w.state)),
  h("div", { class: "meters" },
    h("span", {}, "CPU"), bar(w.cpu_in_use, w.cpu_units, `${w.id} cpu units`),
    h("span", {}, "Memory"), bar(w.memory_in_use, w.memory_mb, `${w.id} memory MB`)),
  h("p", { class: "muted small" },
    `${num(w.running_jobs)} running · ${num(w.jobs_succeeded)} succeeded · ${num(w.jobs_failed)} failed`,
    ` · heartbeat ${ago(w.last_heartbeat)} · up ${duration(w.uptime_seconds)}`,
    w.cpu_percent !== null ? ` · ${w.cpu_percent.toFixed(0)}% cpu, ${Math.round(w.rss_mb)} MB rss` : ""),
  h("p", { class: "small" }, "Types: ", w.job_types.join(", ")),
  (running.get(w.id) || []).length ? h("p", { class: "small running-jobs" }, "Running: ",
    running.get(w.id).slice(0, 12).map((j) => [jobLink(j.id, j.name), " "]),
    running.get(w.id).length > 12 ? `and ${running.get(w.id).length - 12} more` : "") : null,
  w.lingering.length ? h("p", { class: "small warn" }, "Lingering: ",
    w.lingering.map((l) => jobLink(l.job_id))) : null)));
}

// The running jobs this key may see, by worker (one page of the jobs route).
export async function runningByWorker() {
  const page = await get("/jobs?status=running&limit=500");
  const out = new Map();
  for (const j of page.items) {
    if (!out.has(j.worker_id)) out.set(j.worker_id, []);
    out.get(j.worker_id).push(j);
  }
  return out;
}

export async function render(main) {
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Workers")));
  const box = h("div");
  main.append(card(null, box));
  const load = async () => {
    try {
      const [list, running] = await Promise.all([get("/workers"), runningByWorker()]);
      empty(box).append(workerCards(list, running));
    } catch (e) {
      if (e instanceof ApiError && e.status === 403) {
        empty(box).append(h("p", { class: "muted" }, "This key lacks the monitor scope: the fleet is shared by every tenant."));
        return false;
      }
      throw e;
    }
    return true;
  };
  if (!(await load())) return null;
  let last = 0;
  const stream = new Stream({ type: ["monitoring.resource"] });
  stream.on("monitoring.resource", () => {
    if (Date.now() - last < 1000) return;
    last = Date.now();
    load();
  });
  return () => stream.close();
}
