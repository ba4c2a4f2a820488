// A virtualised log tail: every line is kept in memory, only the rows in view (plus a margin)
// are in the DOM, so a million lines cost a few hundred nodes. It follows new lines while the
// reader is at the bottom, pauses when they scroll up, and offers to jump back.

import { empty, h } from "./dom.js";

const LINE = 18; // px; must match .log-row's height in app.css
const OVERSCAN = 30;
const LEVELS = ["debug", "info", "warning", "error", "critical"];

export class LogView {
  constructor({ onDownload }) {
    this.lines = [];
    this.view = [];
    // Per attempt: every seq up to `upto` is held, and the seqs held beyond a gap. Seqs are
    // contiguous from 1, so a gap is a line not seen yet (sent before the page subscribed
    // and not yet stored when it read the history, or dropped by a slow socket).
    this.upto = new Map();
    this.ahead = new Map();
    this.attempt = null;
    this.minLevel = 0;
    this.following = true;
    this.unseen = 0;
    this.scheduled = false;
    this.target = -1; // the scrollTop the view set itself while following

    this.spacer = h("div", { class: "log-spacer" });
    this.rows = h("div", { class: "log-rows" });
    this.box = h("div", { class: "log", role: "log", tabindex: 0, "aria-label": "Log lines",
      "data-testid": "log", "data-following": "true", "data-lines": "0" },
    this.spacer, this.rows);
    this.box.addEventListener("scroll", () => this.onScroll());
    // A wheel turned upwards is the reader's intent even before the scroll lands.
    this.box.addEventListener("wheel", (e) => { if (e.deltaY < 0) this.pause(); },
      { passive: true });
    this.jump = h("button", { type: "button", class: "jump", hidden: true,
      "data-action": "jump-latest", onclick: () => this.follow() }, "Jump to latest");
    this.attemptSelect = h("select", { "aria-label": "Attempt", onchange: (e) => {
      this.attempt = e.target.value ? Number(e.target.value) : null;
      this.refilter();
    } }, h("option", { value: "" }, "All attempts"));
    const levelSelect = h("select", { "aria-label": "Level", "data-testid": "log-level",
      onchange: (e) => { this.minLevel = Number(e.target.value); this.refilter(); } },
    LEVELS.map((lv, i) => h("option", { value: i }, i ? `${lv} and above` : "all levels")));
    this.status = h("span", { class: "muted", "aria-live": "polite" });
    this.el = h("div", { class: "logview" },
      h("div", { class: "log-tools" }, this.attemptSelect, levelSelect, this.status,
        h("button", { type: "button", class: "ghost", "data-action": "download",
          onclick: onDownload }, "Download")),
      h("div", { class: "log-frame" }, this.box, this.jump));
  }

  setAttempts(numbers) {
    const have = new Set([...this.attemptSelect.options].map((o) => o.value));
    for (const n of numbers) {
      if (!have.has(String(n))) this.attemptSelect.append(h("option", { value: n }, `Attempt ${n}`));
    }
  }

  matches(line) {
    return (this.attempt === null || line.attempt === this.attempt) &&
      LEVELS.indexOf(String(line.level).toLowerCase()) >= this.minLevel;
  }

  add(batch) {
    let inserted = false;
    const before = this.upto.size;
    for (const line of batch) {
      const upto = this.upto.get(line.attempt) ?? 0;
      const ahead = this.ahead.get(line.attempt) ?? new Set();
      if (line.seq <= upto || ahead.has(line.seq)) continue; // replays and overlaps
      if (line.seq === upto + 1) {
        let top = line.seq;
        while (ahead.delete(top + 1)) top += 1;
        this.upto.set(line.attempt, top);
      } else {
        ahead.add(line.seq);
        if (!this.upto.has(line.attempt)) this.upto.set(line.attempt, 0);
      }
      this.ahead.set(line.attempt, ahead);
      if (this.insert(line)) inserted = true;
    }
    if (this.upto.size !== before) this.setAttempts([...this.upto.keys()]);
    if (inserted) this.refilter(false);
    this.schedule();
  }

  // Appends in the common case; a backfilled line goes in its place. True when not at the end.
  insert(line) {
    const after = (a, b) => a.attempt > b.attempt || (a.attempt === b.attempt && a.seq > b.seq);
    const n = this.lines.length;
    if (!n || after(line, this.lines[n - 1])) {
      this.lines.push(line);
      if (this.matches(line)) { this.view.push(n); this.unseen += 1; }
      return false;
    }
    let lo = 0; let hi = n;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (after(line, this.lines[mid])) lo = mid + 1; else hi = mid; }
    this.lines.splice(lo, 0, line);
    return true;
  }

  // Where each attempt with a gap should be read again from ("after" for the logs route).
  gaps() {
    return [...this.ahead].filter(([, ahead]) => ahead.size)
      .map(([attempt]) => ({ attempt, after: this.upto.get(attempt) }));
  }

  refilter(jump = true) {
    this.view = [];
    this.lines.forEach((line, i) => { if (this.matches(line)) this.view.push(i); });
    if (jump) this.follow(); else this.schedule();
  }

  follow() {
    this.following = true;
    this.unseen = 0;
    this.schedule();
  }

  pause() {
    if (!this.following) return;
    this.following = false;
    this.schedule();
  }

  onScroll() {
    if (!this.box.isConnected) return;
    if (Math.abs(this.box.scrollTop - this.target) <= 1) return; // the view's own scroll
    this.target = -1;
    const atBottom = this.box.scrollTop + this.box.clientHeight >= this.box.scrollHeight - LINE * 2;
    this.following = atBottom;
    if (atBottom) this.unseen = 0;
    this.schedule();
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => { this.scheduled = false; this.draw(); });
  }

  draw() {
    const total = this.view.length;
    this.spacer.style.height = `${total * LINE}px`;
    this.box.style.height = `${Math.min(420, Math.max(120, total * LINE + 4))}px`;
    if (this.following) {
      const bottom = Math.max(0, total * LINE - this.box.clientHeight);
      if (Math.abs(this.box.scrollTop - bottom) > 1) {
        this.box.scrollTop = bottom;
        this.target = this.box.scrollTop;
      }
      this.unseen = 0;
    }
    const first = Math.max(0, Math.floor(this.box.scrollTop / LINE) - OVERSCAN);
    const count = Math.ceil(this.box.clientHeight / LINE) + 2 * OVERSCAN;
    const end = Math.min(total, first + count);
    empty(this.rows);
    this.rows.style.transform = `translateY(${first * LINE}px)`;
    for (let i = first; i < end; i++) {
      const line = this.lines[this.view[i]];
      const level = String(line.level).toLowerCase();
      this.rows.append(h("div", { class: `log-row lv-${level}` },
        h("span", { class: "log-ts" }, String(line.ts).slice(11, 23)),
        h("span", { class: "log-lv" }, level),
        h("span", { class: "log-msg" }, line.message)));
    }
    this.box.dataset.following = String(this.following);
    this.box.dataset.lines = String(total);
    this.jump.hidden = this.following;
    this.jump.textContent = this.unseen ? `Jump to latest (${this.unseen} new)` : "Jump to latest";
    this.status.textContent = `${total.toLocaleString("en-US")} lines` +
      (this.following ? " · following" : " · paused");
  }

  text() {
    return this.lines.map((l) => `${l.ts} attempt=${l.attempt} ${l.level} ${l.message}`)
      .join("\n");
  }
}
