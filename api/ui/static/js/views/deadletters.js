// Dead letters: jobs that failed for good, with their last error; retry one (or all shown)
// with the jobs cancelled because of it.

import { retryJobs } from "../actions.js";
import { get, query } from "../api.js";
import { ago, badge, h, jobLink, link } from "../dom.js";
import { navigate } from "../main.js";
import { watchNew } from "./jobs.js";

export async function render(main, _id, params) {
  const cursor = params.get("cursor");
  const page = await get(`/jobs${query({ status: "failed", cursor, limit: 50 })}`);
  const descendants = h("input", { type: "checkbox", id: "with-descendants", checked: true });
  const head = h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Dead letters"),
    h("p", { class: "muted" }, "Jobs that failed with no attempt left. A retry runs them again ",
      "with a fresh retry budget.")),
  h("div", { class: "actions" }, h("label", { class: "check" }, descendants,
    " with the jobs cancelled because of it"),
  h("button", { type: "button", disabled: !page.items.length, "data-action": "retry-all",
    onclick: async () => {
      if (await retryJobs(page.items.map((j) => j.id), descendants.checked)) {
        navigate(location.href, true);
      }
    } }, `Retry all ${page.items.length} shown…`)));
  main.append(head);
  const rows = page.items.map((j) => h("tr", { "data-job-id": j.id },
    h("td", {}, jobLink(j.id)), h("td", {}, j.name), h("td", {}, j.type),
    h("td", {}, badge(j.status)), h("td", { class: "num" }, j.attempts),
    h("td", { title: j.finished_at }, ago(j.finished_at)),
    h("td", { class: "why" }, j.error || ""),
    h("td", {}, h("button", { type: "button", class: "primary", "data-action": "retry",
      onclick: async () => {
        if (await retryJobs([j.id], descendants.checked)) navigate(location.href, true);
      } }, "Retry…"))));
  main.append(h("div", { class: "table-wrap" }, h("table", { class: "grid",
    "aria-label": "Dead letters" },
  h("thead", {}, h("tr", {}, ["Job", "Name", "Type", "Status", "Attempts", "Failed", "Last error",
    ""].map((t) => h("th", { scope: "col" }, t)))),
  h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 8, class: "empty" },
    "No dead letters.")))),
  h("nav", { class: "pager" }, page.next_cursor ? link(`/ui/dead-letters${query({
    cursor: page.next_cursor })}`, "Older →") : null)));
  if (cursor) return null;
  // New dead letters are announced as the jobs table announces new jobs.
  const shown = new Map(page.items.map((j) => [j.id, j.status]));
  const stream = watchNew({ status: ["failed"] }, page.items[0], shown, head, "dead letter");
  return () => stream.close();
}
