// Jobs: the API's filters kept in the URL, keyset paging with its cursor, bulk cancel/retry.

import { cancelJobs, retryJobs } from "../actions.js";
import { all, get, query } from "../api.js";
import { advances, ago, badge, empty, h, jobLink, link, micros, num, STATUSES } from "../dom.js";
import { navigate } from "../main.js";
import { Stream } from "../stream.js";

const FILTERS = ["status", "type", "priority", "batch_id", "parent_id", "created_after",
  "created_before"];
const backStack = [];

export function filtersOf(params) {
  const f = {};
  for (const name of FILTERS) {
    const v = name === "status" ? params.getAll(name) : params.get(name);
    if (v && v.length) f[name] = v;
  }
  return f;
}

function filterForm(f) {
  const form = h("form", { class: "filters", "aria-label": "Filters" });
  const statuses = h("fieldset", { class: "statuses" }, h("legend", {}, "Status"),
    STATUSES.map((s) => h("label", { class: `chip s-${s}` },
      h("input", { type: "checkbox", name: "status", value: s,
        checked: (f.status || []).includes(s) }), ` ${s}`)));
  const field = (name, label, attrs = {}) => h("label", { class: "field" }, label,
    h("input", { name, value: f[name] || "", ...attrs }));
  const prio = h("label", { class: "field" }, "Priority",
    h("select", { name: "priority" }, ["", "critical", "high", "normal", "low"].map((p) =>
      h("option", { value: p, selected: (f.priority || "") === p }, p || "any"))));
  const local = (iso) => (iso ? iso.slice(0, 16) : "");
  const time = (name, label) => h("label", { class: "field" }, label,
    h("input", { type: "datetime-local", name, value: local(f[name] ? new Date(f[name])
      .toISOString() : "") }));
  const types = h("datalist", { id: "job-types" });
  get("/types").then((list) => types.append(...list.map((t) => h("option", { value: t.name }))),
    () => {});
  form.append(statuses, types, h("div", { class: "row" },
    field("type", "Type", { placeholder: "any", list: "job-types" }),
    prio, field("batch_id", "Batch", { placeholder: "batch id", size: 36 }),
    field("parent_id", "Parent", { placeholder: "job id", size: 36 }),
    time("created_after", "Created after"), time("created_before", "Created before"),
    h("button", { type: "submit", class: "primary" }, "Apply"),
    link("/ui/jobs", "Clear")));
  form.addEventListener("change", (e) => { if (e.target.type === "checkbox") form.requestSubmit(); });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const out = new URLSearchParams();
    for (const [k, v] of data.entries()) {
      if (!v) continue;
      out.append(k, k.startsWith("created_") ? new Date(v).toISOString() : v);
    }
    backStack.length = 0;
    navigate(`/ui/jobs${out.toString() ? `?${out}` : ""}`);
  });
  return form;
}

function row(job, selected, onToggle) {
  const tick = h("input", { type: "checkbox", "aria-label": `select job ${job.id}`,
    checked: selected.has(job.id), onchange: (e) => onToggle(job.id, e.target.checked) });
  return h("tr", { "data-job-id": job.id },
    h("td", {}, tick),
    h("td", {}, jobLink(job.id)),
    h("td", {}, job.name),
    h("td", {}, job.type),
    h("td", { class: "status-cell" }, badge(job.status)),
    h("td", {}, String(job.priority)),
    h("td", { class: "num" }, job.attempts),
    h("td", { title: job.created_at }, ago(job.created_at)),
    h("td", {}, job.batch_id ? link(`/ui/batches/${job.batch_id}`, h("code", {},
      job.batch_id.slice(0, 8))) : "—"),
    h("td", { class: "why" }, job.error || job.status_reason || ""));
}

export async function render(main, _id, params) {
  const f = filtersOf(params);
  const cursor = params.get("cursor");
  const selected = new Set();
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Jobs")), filterForm(f));
  const bulk = h("div", { class: "bulk", role: "toolbar", "aria-label": "Bulk actions" });
  const body = h("tbody");
  const table = h("table", { class: "grid", "aria-label": "Jobs" },
    h("thead", {}, h("tr", {},
      h("th", {}, h("input", { type: "checkbox", "aria-label": "select this page",
        onchange: (e) => {
          for (const box of body.querySelectorAll("input[type=checkbox]")) {
            box.checked = e.target.checked;
            box.dispatchEvent(new Event("change"));
          }
        } })),
      ["Job", "Name", "Type", "Status", "Priority", "Attempts", "Created", "Batch",
        "Error / reason"].map((t) => h("th", { scope: "col" }, t)))),
    body);
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  main.append(bulk, h("div", { class: "table-wrap" }, table), pager);

  const started = performance.now();
  const page = await get(`/jobs${query({ ...f, cursor, limit: 50 })}`);
  main.dataset.loadMs = String(Math.round(performance.now() - started));
  let everything = null;
  const drawBulk = () => {
    empty(bulk);
    const ids = everything || [...selected];
    bulk.append(h("span", { class: "muted", "data-testid": "selected-count" },
      everything ? `all ${num(ids.length)} matching selected` : `${ids.length} selected`),
    h("button", { type: "button", class: "ghost", disabled: !page.items.length,
      onclick: async () => {
        everything = (await all("/jobs", f)).map((j) => j.id);
        drawBulk();
      } }, "Select all matching"),
    h("button", { type: "button", disabled: !ids.length, "data-action": "bulk-cancel",
      onclick: async () => { if (await cancelJobs(ids)) navigate(location.href, true); } },
    "Cancel…"),
    h("button", { type: "button", disabled: !ids.length, "data-action": "bulk-retry",
      onclick: async () => { if (await retryJobs(ids)) navigate(location.href, true); } },
    "Retry…"));
  };
  const toggle = (id, on) => {
    everything = null;
    if (on) selected.add(id); else selected.delete(id);
    drawBulk();
  };
  for (const job of page.items) body.append(row(job, selected, toggle));
  if (!page.items.length) {
    body.append(h("tr", {}, h("td", { colspan: 10, class: "empty" }, "No jobs match.")));
  }
  drawBulk();

  const here = (c) => `/ui/jobs${query({ ...f, cursor: c })}`;
  pager.append(
    h("button", { type: "button", disabled: !cursor, "data-action": "newer", onclick: () => {
      navigate(here(backStack.pop() || null));
    } }, "← Newer"),
    h("span", { class: "muted" }, `${page.items.length} on this page`),
    h("button", { type: "button", disabled: !page.next_cursor, "data-action": "older",
      onclick: () => { backStack.push(cursor); navigate(here(page.next_cursor)); } },
    "Older →"));

  // Live: the statuses of the jobs on this page (with their snapshot on subscribe).
  const ids = page.items.map((j) => j.id);
  const shown = new Map(page.items.map((j) => [j.id, j.status]));
  const streams = [];
  if (ids.length) {
    const rows = new Stream({ job_id: ids, type: ["job.status"] });
    rows.on("job.status", (e) => {
      if (!advances(shown.get(e.job_id), e.status, e.snapshot)) return;
      shown.set(e.job_id, e.status);
      const cell = body.querySelector(`tr[data-job-id="${e.job_id}"] .status-cell`);
      if (cell) empty(cell).append(badge(e.status));
    });
    streams.push(rows);
  }
  if (!cursor) streams.push(watchNew(f, page.items[0], shown, bulk));
  return () => streams.forEach((s) => s.close());
}

// On the first page: jobs that match the filter and are newer than its top row. An event
// about a job not shown asks the API (at most once a second) how many such jobs there are,
// so every filter counts, priority and time included.
export function watchNew(f, top, shown, bar, noun = "job") {
  const notice = h("button", { type: "button", class: "new-jobs", hidden: true,
    "data-testid": "new-jobs", onclick: () => navigate(location.href, true) });
  bar.after(notice);
  const stream = new Stream({ type: ["job.status"], status: f.status, batch_id: f.batch_id });
  let due = null;
  const count = async () => {
    due = null;
    const fresh = await get(`/jobs${query({ ...f, limit: 50 })}`);
    const after = top ? micros(top.created_at) : -1n;
    const n = fresh.items.filter((j) => micros(j.created_at) > after).length;
    notice.hidden = !n;
    notice.textContent = `${n === 50 ? "50+" : n} new ${noun}${n === 1 ? "" : "s"} — show`;
  };
  stream.on("job.status", (e) => {
    if (shown.has(e.job_id) || e.snapshot || due) return;
    due = setTimeout(count, 1000);
  });
  const close = stream.close.bind(stream);
  stream.close = () => { clearTimeout(due); close(); };
  return stream;
}
