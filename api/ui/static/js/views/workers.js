// Workers: capacity and use as bars, state, last heartbeat, running jobs; refreshed on the
// scheduler's resource monitoring.

import { ApiError, get } from "../api.js";
import { ago, bar, card, duration, empty, h, jobLink, num } from "../dom.js";
import { Stream } from "../stream.js";

export function workerCards(list) {
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
  w.lingering.length ? h("p", { class: "small warn" }, "Lingering: ",
    w.lingering.map((l) => jobLink(l.job_id))) : null)));
}

export async function render(main) {
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Workers")));
  const box = h("div");
  main.append(card(null, box));
  const load = async () => {
    try {
      empty(box).append(workerCards(await get("/workers")));
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
