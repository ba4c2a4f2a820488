// Cancel and retry, for one job or many: the same REST calls a script would make.

import { ApiError, patch, post } from "./api.js";
import { confirmDialog, toast } from "./dom.js";

async function pool(items, worker, width = 8) {
  const results = [];
  let next = 0;
  async function lane() {
    while (next < items.length) {
      const i = next++;
      try { results[i] = { ok: true, value: await worker(items[i]) }; }
      catch (e) { results[i] = { ok: false, error: e }; }
    }
  }
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, lane));
  return results;
}

function summary(verb, results) {
  const done = results.filter((r) => r.ok).length;
  const refused = results.filter((r) => !r.ok && r.error instanceof ApiError && r.error.status === 409);
  const failed = results.length - done - refused.length;
  const parts = [`${done} ${verb}`];
  if (refused.length) parts.push(`${refused.length} skipped (${refused[0].error.message})`);
  if (failed) parts.push(`${failed} failed`);
  return parts.join(", ");
}

export async function cancelJobs(ids) {
  const n = ids.length;
  const ok = await confirmDialog(
    `Cancel ${n} job${n === 1 ? "" : "s"}? Waiting jobs are cancelled at once with everything ` +
    "downstream; running ones are asked to stop.", `Cancel ${n} job${n === 1 ? "" : "s"}`);
  if (!ok) return null;
  const results = await pool(ids, (id) => patch(`/jobs/${id}/cancel`));
  toast(summary("cancelled", results), results.every((r) => r.ok) ? "ok" : "warn");
  return results;
}

export async function retryJobs(ids, withDescendants = true) {
  const n = ids.length;
  const also = withDescendants ? " with the jobs cancelled because of them" : "";
  const ok = await confirmDialog(`Retry ${n} failed job${n === 1 ? "" : "s"}${also}?`,
    `Retry ${n} job${n === 1 ? "" : "s"}`);
  if (!ok) return null;
  const q = withDescendants ? "?with_descendants=true" : "";
  const results = await pool(ids, (id) => post(`/jobs/${id}/retry${q}`));
  toast(summary("resubmitted", results), results.every((r) => r.ok) ? "ok" : "warn");
  return results;
}
