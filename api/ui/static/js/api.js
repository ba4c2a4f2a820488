// The public REST API, with the reader's key. The key lives in sessionStorage (this tab only)
// and travels as an Authorization header; it is never put in a URL.

const KEY = "smartq.key";

export class ApiError extends Error {
  constructor(status, message, detail) {
    super(message);
    this.status = status;
    this.detail = detail;
  }
}

export function getKey() { return sessionStorage.getItem(KEY) || ""; }

export function forgetKey() {
  sessionStorage.removeItem(KEY);
  document.getElementById("forget-key").hidden = true;
}

let asking = null;

// Ask for a key until one works (a 401 shows why); one prompt serves every waiting request.
export function askForKey(reason = "") {
  if (asking) return asking;
  const dialog = document.getElementById("key-dialog");
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  const error = document.getElementById("key-error");
  error.textContent = reason;
  input.value = "";
  asking = new Promise((resolve) => {
    const refuseEscape = (e) => e.preventDefault();
    dialog.addEventListener("cancel", refuseEscape);
    const onSubmit = async (e) => {
      e.preventDefault();
      const key = input.value.trim();
      const answer = await fetch("/jobs?limit=1", { headers: { Authorization: `Bearer ${key}` } });
      if (answer.status === 401) {
        error.textContent = "That key was refused (unknown, revoked or expired).";
        input.select();
        return;
      }
      sessionStorage.setItem(KEY, key);
      document.getElementById("forget-key").hidden = false;
      form.removeEventListener("submit", onSubmit);
      dialog.removeEventListener("cancel", refuseEscape);
      dialog.close();
      asking = null;
      resolve(key);
    };
    form.addEventListener("submit", onSubmit);
    dialog.showModal();
    input.focus();
  });
  return asking;
}

function headers(extra) {
  const key = getKey();
  const out = { Accept: "application/json", ...extra };
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

// An admin may narrow every view to one tenant (`?tenant=` on every route and the stream).
const TENANT = "smartq.tenant";
export function getTenant() { return sessionStorage.getItem(TENANT) || ""; }
export function setTenant(tenant) {
  if (tenant) sessionStorage.setItem(TENANT, tenant); else sessionStorage.removeItem(TENANT);
}
export function withTenant(path) {
  const tenant = getTenant();
  if (!tenant || path.startsWith("/admin/")) return path;
  return `${path}${path.includes("?") ? "&" : "?"}tenant=${encodeURIComponent(tenant)}`;
}

export async function request(method, path, body) {
  path = withTenant(path);
  for (let tries = 0; ; tries++) {
    const init = { method, headers: headers(body ? { "Content-Type": "application/json" } : {}) };
    if (body) init.body = JSON.stringify(body);
    const answer = await fetch(path, init);
    if (answer.status === 401 && tries < 5) {
      await askForKey(getKey() ? "The key was refused; it may have been revoked." : "");
      continue;
    }
    const text = await answer.text();
    let doc = null;
    try { doc = text ? JSON.parse(text) : null; } catch { doc = { error: text.slice(0, 200) }; }
    if (!answer.ok) {
      const message = (doc && (doc.error || doc.detail)) || answer.statusText;
      throw new ApiError(answer.status, typeof message === "string" ? message
        : JSON.stringify(message), doc && doc.detail);
    }
    return doc;
  }
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body);
export const patch = (path, body) => request("PATCH", path, body);

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else if (v !== null && v !== undefined && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

// Every page of a keyset-paged list, up to `max` items (the API's cursor, never an offset).
export async function all(path, params, max = 10000, key = "items") {
  const out = [];
  let cursor = null;
  do {
    const page = await get(path + query({ ...params, cursor, limit: 500 }));
    out.push(...page[key]);
    cursor = page.next_cursor;
  } while (cursor && out.length < max);
  return out;
}
