// Batches, newest first, with their totals; keyset paging. Live: a job status event of a
// batch on the page redraws that batch's totals, state and duration in place (the summaries
// are read again at most once a second, one request for the whole page), and on the first
// page newer batches are announced ("2 new batches — show").

import { get, query } from "../api.js";
import { ago, badge, duration, empty, h, link, num, STATUSES } from "../dom.js";
import { navigate } from "../main.js";
import { Stream } from "../stream.js";

const PAGE = 50;

function cells(b) {
  return [
    h("td", {}, link(`/ui/batches/${b.batch_id}`, b.name || h("code", {}, b.batch_id.slice(0, 8)))),
    h("td", { class: "num" }, num(b.job_count)),
    h("td", {}, h("div", { class: "mini" }, STATUSES.filter((s) => b.totals[s]).map((s) =>
      h("span", { class: "mini-count" }, badge(s), ` ${num(b.totals[s])}`)))),
    h("td", { class: "batch-state" }, b.done ? "done" : "running"),
    h("td", { title: b.created_at }, ago(b.created_at)),
    h("td", {}, duration(b.duration_seconds)),
  ];
}

function row(b) {
  return h("tr", { "data-batch-id": b.batch_id, "data-done": String(b.done) }, cells(b));
}

export async function render(main, _id, params) {
  const cursor = params.get("cursor");
  const path = `/batches${query({ cursor, limit: PAGE })}`;
  const page = await get(path);
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Batches")));
  const body = h("tbody", {}, page.items.length ? page.items.map(row)
    : h("tr", {}, h("td", { colspan: 6, class: "empty" }, "No batches yet.")));
  const notice = h("button", { type: "button", class: "new-jobs", hidden: true,
    "data-testid": "new-batches", onclick: () => navigate(location.href, true) });
  main.append(notice, h("div", { class: "table-wrap" }, h("table", { class: "grid",
    "aria-label": "Batches" },
  h("thead", {}, h("tr", {}, ["Batch", "Jobs", "Totals", "State", "Created", "Duration"]
    .map((t) => h("th", { scope: "col" }, t)))), body)),
  h("nav", { class: "pager" },
    h("button", { type: "button", disabled: !cursor, onclick: () => history.back() }, "← Newer"),
    h("button", { type: "button", disabled: !page.next_cursor,
      onclick: () => navigate(`/ui/batches${query({ cursor: page.next_cursor })}`) }, "Older →")));

  const shown = new Set(page.items.map((b) => b.batch_id));
  const running = page.items.filter((b) => !b.done).map((b) => b.batch_id);
  // The first page hears every batch (new ones too); a later one only its running batches.
  if (cursor && !running.length) return null;
  const stream = new Stream(cursor ? { type: ["job.status"], batch_id: running }
    : { type: ["job.status"] });
  let due = null;
  const refresh = async () => {
    due = null;
    const fresh = await get(path);
    let newer = 0;
    for (const b of fresh.items) {
      const tr = body.querySelector(`tr[data-batch-id="${b.batch_id}"]`);
      if (tr) {
        empty(tr).append(...cells(b));
        tr.dataset.done = String(b.done);
      } else if (!cursor && !shown.has(b.batch_id)) {
        newer += 1;
      }
    }
    notice.hidden = !newer;
    notice.textContent = `${newer === PAGE ? `${PAGE}+` : newer} new batch${newer === 1 ? "" : "es"} — show`;
  };
  stream.on("job.status", (e) => {
    if (!e.batch_id || due) return;
    if (e.snapshot && shown.has(e.batch_id)) return; // what the page already shows
    due = setTimeout(refresh, 1000);
  });
  return () => { clearTimeout(due); stream.close(); };
}
