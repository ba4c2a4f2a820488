// Keys (admin keys only): every key without its secret, revoke, and make a new one, shown once.

import { ApiError, get, getKey, post, request } from "../api.js";
import { ago, card, confirmDialog, empty, h, toast, when } from "../dom.js";
import { navigate } from "../main.js";

const SCOPES = ["submit", "read", "cancel", "monitor"];

// The id part of the key this tab presents (sq_<id>_<secret>), to warn before revoking it.
function ownId() {
  const m = getKey().match(/^sq_([^_]+)_/);
  return m ? m[1] : null;
}

function createForm(onMade) {
  const form = h("form", { class: "filters", "aria-label": "New key" },
    h("div", { class: "row" },
      h("label", { class: "field" }, "Tenant", h("input", { name: "tenant", required: true,
        value: "default" })),
      h("fieldset", { class: "statuses" }, h("legend", {}, "Scopes"), SCOPES.map((s) =>
        h("label", { class: "chip plain" }, h("input", { type: "checkbox", name: "scopes", value: s,
          checked: s !== "monitor" }), ` ${s}`))),
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "admin" }), " admin"),
      h("label", { class: "field" }, "Label", h("input", { name: "label" })),
      h("label", { class: "field" }, "Expires", h("input", { name: "expires",
        placeholder: "90d (blank: never)" })),
      h("button", { type: "submit", class: "primary" }, "Create key")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const body = { tenant: data.get("tenant"), scopes: data.getAll("scopes"),
      admin: data.get("admin") === "on", label: data.get("label") || null };
    if (data.get("expires")) body.expires = data.get("expires");
    try { onMade(await post("/admin/keys", body)); }
    catch (err) { toast(err.message, "warn"); }
  });
  return form;
}

export async function render(main) {
  let keys;
  try { keys = await get("/admin/keys"); }
  catch (e) {
    if (e instanceof ApiError && e.status === 403) {
      main.append(card("Keys", h("p", { class: "muted" }, "Only admin keys manage keys.")));
      return null;
    }
    throw e;
  }
  const made = h("div", { "aria-live": "polite" });
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Keys")), made,
    createForm((key) => {
      empty(made).append(card("New key — shown this once", h("p", {}, "Copy it now: only its hash is stored."),
        h("pre", { "data-testid": "new-key" }, key.key)));
      refresh();
    }));
  const body = h("tbody");
  main.append(h("div", { class: "table-wrap" }, h("table", { class: "grid", "aria-label": "Keys" },
    h("thead", {}, h("tr", {}, ["Id", "Tenant", "Scopes", "Label", "Created", "Expires",
      "Last used", ""].map((t) => h("th", { scope: "col" }, t)))), body)));
  const draw = () => {
    empty(body);
    for (const k of keys) {
      body.append(h("tr", { "data-key-id": k.id },
        h("td", {}, h("code", {}, k.id), k.id === ownId() ? " (this tab)" : ""),
        h("td", {}, k.tenant), h("td", {}, k.admin ? "admin" : k.scopes.join(", ")),
        h("td", {}, k.label || ""), h("td", { title: k.created_at }, ago(k.created_at)),
        h("td", {}, k.expires_at ? when(k.expires_at) : "never"),
        h("td", {}, k.last_used_at ? ago(k.last_used_at) : "never"),
        h("td", {}, k.revoked_at ? h("span", { class: "muted" }, `revoked ${ago(k.revoked_at)}`)
          : h("button", { type: "button", "data-action": "revoke", onclick: async () => {
            const own = k.id === ownId() ? " It is the key this tab uses: the page will ask for another." : "";
            if (!(await confirmDialog(`Revoke key ${k.id} of ${k.tenant}? Every request and stream using it is refused within seconds.${own}`, "Revoke"))) return;
            await request("DELETE", `/admin/keys/${k.id}`);
            toast(`revoked ${k.id}`, "ok");
            if (own) navigate(location.href, true); else refresh();
          } }, "Revoke…"))));
    }
  };
  const refresh = async () => { keys = await get("/admin/keys"); draw(); };
  draw();
  return null;
}
