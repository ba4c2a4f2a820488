// Batches, newest first, with their totals; keyset paging.

import { get, query } from "../api.js";
import { ago, badge, duration, h, link, num, STATUSES } from "../dom.js";
import { navigate } from "../main.js";

export async function render(main, _id, params) {
  const cursor = params.get("cursor");
  const page = await get(`/batches${query({ cursor, limit: 50 })}`);
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Batches")));
  const rows = page.items.map((b) => h("tr", { "data-batch-id": b.batch_id },
    h("td", {}, link(`/ui/batches/${b.batch_id}`, b.name || h("code", {}, b.batch_id.slice(0, 8)))),
    h("td", { class: "num" }, num(b.job_count)),
    h("td", {}, h("div", { class: "mini" }, STATUSES.filter((s) => b.totals[s]).map((s) =>
      h("span", { class: "mini-count" }, badge(s), ` ${num(b.totals[s])}`)))),
    h("td", {}, b.done ? "done" : "running"),
    h("td", { title: b.created_at }, ago(b.created_at)),
    h("td", {}, duration(b.duration_seconds))));
  main.append(h("div", { class: "table-wrap" }, h("table", { class: "grid", "aria-label": "Batches" },
    h("thead", {}, h("tr", {}, ["Batch", "Jobs", "Totals", "State", "Created", "Duration"]
      .map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 6, class: "empty" },
      "No batches yet."))))),
  h("nav", { class: "pager" },
    h("button", { type: "button", disabled: !cursor, onclick: () => history.back() }, "← Newer"),
    h("button", { type: "button", disabled: !page.next_cursor,
      onclick: () => navigate(`/ui/batches${query({ cursor: page.next_cursor })}`) }, "Older →")));
  return null;
}
