// WS /jobs/stream with the page's filter: reconnects with backoff and subscribes again with
// the same filter, so the server sends the watched jobs' current status (snapshot) and
// nothing is lost across a drop. Browsers cannot set headers on a WebSocket: the key goes as
// the second subprotocol ("smartq.bearer.<key>"), never in the URL.

import { askForKey, getKey, query, withTenant } from "./api.js";

const live = () => document.getElementById("live");

function setLive(state, text) {
  const el = live();
  if (!el) return;
  el.dataset.live = state;
  el.textContent = text;
}

export class Stream {
  // filter: {job_id: [...], batch_id: [...], type: [...], status: [...]} as query parameters.
  constructor(filter = {}) {
    this.filter = filter;
    this.handlers = new Map();
    this.closed = false;
    this.delay = 500;
    this.opens = 0;
    this.connect();
  }

  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(fn);
    return this;
  }

  emit(type, event) {
    for (const fn of this.handlers.get(type) || []) fn(event);
    for (const fn of this.handlers.get("*") || []) fn(event);
  }

  connect() {
    if (this.closed) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const key = getKey();
    const protocols = key ? ["smartq", `smartq.bearer.${key}`] : ["smartq"];
    const params = query({ ...this.filter, frames: "batched" });
    const url = withTenant(`${scheme}://${location.host}/jobs/stream${params}`);
    const ws = new WebSocket(url, protocols);
    this.ws = ws;
    setLive("connecting", "connecting…");
    ws.onopen = () => {
      this.delay = 500;
      this.opens += 1;
      setLive("on", "live");
      this.emit("stream.open", { type: "stream.open", reconnect: this.opens > 1 });
    };
    ws.onmessage = (m) => {
      // ?frames=batched: a frame is one event, or an array of the events that waited.
      const data = JSON.parse(m.data);
      for (const event of Array.isArray(data) ? data : [data]) this.emit(event.type, event);
    };
    ws.onclose = async (e) => {
      if (this.closed || ws !== this.ws) return;
      setLive("off", "reconnecting…");
      if (e.code === 4401) await askForKey("The stream refused the key.");
      if (e.code === 4403 || e.code === 4404 || e.code === 4400) {
        setLive("off", e.code === 4403 ? "no live updates (scope)" : "offline");
        return;
      }
      setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 10000);
    };
  }

  // Replace the filter; the server answers with a snapshot of the newly watched jobs.
  set(filter) {
    this.filter = filter;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ action: "set", job_ids: filter.job_id || [],
        batch_ids: filter.batch_id || [], types: filter.type, statuses: filter.status }));
    }
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close(1000);
    setLive("idle", "not live");
  }
}
