// The dashboard's router: one app shell for every /ui path, each view drawn from the API.

import { forgetKey, get, getKey, getTenant, setTenant } from "./api.js";
import { empty, h } from "./dom.js";
import * as batch from "./views/batch.js";
import * as batches from "./views/batches.js";
import * as deadLetters from "./views/deadletters.js";
import * as job from "./views/job.js";
import * as jobs from "./views/jobs.js";
import * as keys from "./views/keys.js";
import * as overview from "./views/overview.js";
import * as workers from "./views/workers.js";

const ROUTES = [
  [/^\/ui\/?$/, overview, "overview"],
  [/^\/ui\/jobs\/?$/, jobs, "jobs"],
  [/^\/ui\/jobs\/([0-9a-f-]{36})\/?$/, job, "jobs"],
  [/^\/ui\/batches\/?$/, batches, "batches"],
  [/^\/ui\/batches\/([0-9a-f-]{36})\/?$/, batch, "batches"],
  [/^\/ui\/dead-letters\/?$/, deadLetters, "dead-letters"],
  [/^\/ui\/workers\/?$/, workers, "workers"],
  [/^\/ui\/keys\/?$/, keys, "keys"],
];

let cleanup = null;

async function route() {
  if (cleanup) { try { cleanup(); } catch (e) { console.error(e); } }
  cleanup = null;
  const main = empty(document.getElementById("main"));
  const params = new URLSearchParams(location.search);
  for (const [pattern, view, nav] of ROUTES) {
    const m = location.pathname.match(pattern);
    if (!m) continue;
    for (const a of document.querySelectorAll("[data-nav]")) {
      if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    try {
      cleanup = (await view.render(main, m[1], params)) || null;
    } catch (e) {
      main.append(h("div", { class: "card error-card", role: "alert" },
        h("h2", {}, "Could not load this view"), h("p", {}, e.message)));
    }
    return;
  }
  main.append(h("div", { class: "card" }, h("h1", {}, "Not found"),
    h("p", {}, "No view at ", h("code", {}, location.pathname), ".")));
}

export function navigate(href, replace = false) {
  if (replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  route();
  if (!replace) document.getElementById("main").focus({ preventScroll: true });
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-link]");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
  e.preventDefault();
  navigate(a.getAttribute("href"));
});

window.addEventListener("popstate", route);

// g then o/j/b/d/w: go to a view; "/" focuses the view's first filter.
let pendingG = false;
document.addEventListener("keydown", (e) => {
  if (e.target.closest("input, select, textarea, dialog") || e.ctrlKey || e.metaKey) return;
  if (e.key === "/") {
    const first = document.querySelector("main input, main select");
    if (first) { e.preventDefault(); first.focus(); }
    return;
  }
  if (pendingG) {
    pendingG = false;
    const to = { o: "/ui", j: "/ui/jobs", b: "/ui/batches", d: "/ui/dead-letters",
      w: "/ui/workers" }[e.key];
    if (to) navigate(to);
    return;
  }
  if (e.key === "g") pendingG = true;
});

const forget = document.getElementById("forget-key");
forget.hidden = !getKey();
forget.addEventListener("click", () => { forgetKey(); setTenant(""); location.reload(); });

route();

// Admin-only panels appear for admin keys (the API decides: 200 or 403): the keys, and a
// choice of tenant that narrows every view.
get("/admin/keys").then((keys) => {
  document.querySelector("[data-nav=keys]").hidden = false;
  const picker = document.getElementById("tenant");
  const tenants = [...new Set([...keys.map((k) => k.tenant), getTenant()].filter(Boolean))].sort();
  picker.append(...tenants.map((t) => h("option", { value: t, selected: t === getTenant() }, t)));
  picker.hidden = false;
  picker.addEventListener("change", () => { setTenant(picker.value); route(); });
}, () => {});
