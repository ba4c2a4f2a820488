"""The dashboard in headless Chromium against the real processes: ``python -m bench ui``.

Chromium is the system's (``/usr/bin/chromium``, or ``SMARTQ_BENCH_CHROMIUM``), driven by
Playwright; the page holds the stack's key as a reader's tab would. Figures:

* ``dag10k``: a 10,000-job layered DAG (50 × 200, two parents each) held behind a gate job,
  opened once the scheduler has taken it in (every job blocked).
  ``interactive_s`` = from navigation until the graph is drawn and the main thread is free
  (target <= 3; ``view_s`` the view's own part: reading the jobs, grouping, layout, drawing);
  then the gate ends, the DAG runs, and ``recolour_lag_s`` = from the last job's
  ``finished_at`` until the page shows the batch done (every node recoloured from the stream).
* ``log_follow``: a job logs 5,000 lines/s for 20 s while its page follows. ``produced_per_s``
  = lines the job wrote per second (its lines' timestamps), ``shown_per_s`` = lines drawn per
  second on the page, ``lag_s`` = from the last line's timestamp until the page holds it
  (target <= 1: it did not fall behind; sampled every 0.25 s),
  ``max_dom_nodes`` = the most elements the page had (virtualised: a few hundred).
* ``log_1m``: a finished job with 1,000,000 stored lines (COPY-ed in): ``load_s`` until every
  line is held, ``dom_nodes`` then, and ``scroll_ms`` to draw the middle of the log.
* ``table_1m``: 1,000,000 finished jobs (bench.seed); ``page_ms`` = a click on "Older" until
  the next page's rows are drawn (target <= 200), over 10 pages, unfiltered and by status.

``--quick``: 5 layers, 1,000 lines/s for 3 s, 50,000 stored lines, 20,000 jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg

import smartq
from bench import figures
from bench.dags import layered
from bench.harness import Stack, psycopg_dsn, run_smartq
from bench.seed import seed
from worker.context import JobContext

CHROMIUM = os.environ.get("SMARTQ_BENCH_CHROMIUM", "/usr/bin/chromium")
FREE = "() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))"


@smartq.job("ui_drip")
async def ui_drip(ctx: JobContext) -> dict[str, int]:
    """``{"lines": n, "per_second": r}``: n log lines at about r a second (the worker imports
    this module for the bench: ``SMARTQ_IMPORTS=bench.ui``)."""
    lines = int(ctx.payload["lines"])
    rate = float(ctx.payload["per_second"])
    per_tick = max(1, round(rate * 0.01))
    began = time.monotonic()
    for i in range(1, lines + 1):
        ctx.log.info("line %d of %d: the quick brown fox jumps over the lazy dog", i, lines)
        if i % per_tick == 0:
            # Paced by the clock: line i is due at i / rate. (A fixed 50 ms sleep after each
            # burst added the burst's own time to every tick: 3,520 lines/s for 5,000 asked.)
            await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
    return {"lines": lines}


@dataclass(frozen=True)
class Sizes:
    layers: int
    rate: int
    seconds: int
    stored_lines: int
    table_rows: int


FULL = Sizes(layers=50, rate=5_000, seconds=20, stored_lines=1_000_000, table_rows=1_000_000)
QUICK = Sizes(layers=5, rate=1_000, seconds=3, stored_lines=50_000, table_rows=20_000)


class Api:
    """The stack's REST API with its key."""

    def __init__(self, stack: Stack) -> None:
        self.base = f"http://127.0.0.1:{stack.port}"
        self.http = httpx.AsyncClient(base_url=self.base, headers=stack.headers, timeout=120)

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        r = await self.http.post(path, json=body)
        r.raise_for_status()
        return r.json()

    async def status(self, job_id: str) -> str:
        r = await self.http.get(f"/jobs/{job_id}")
        r.raise_for_status()
        return str(r.json()["status"])

    async def wait(self, job_id: str, status: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while await self.status(job_id) != status:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} not {status} after {timeout}s")
            await asyncio.sleep(0.1)


async def dag10k(stack: Stack, api: Api, context: Any, sizes: Sizes) -> dict[str, float]:
    # The gate is a job of its own: a batch holds at most 10,000 jobs.
    gate = await api.post("/jobs", {"type": "sleep", "payload": {"seconds": 15}})
    jobs = layered(sizes.layers, 200, 2, seed=1)
    for job in jobs[:200]:
        job["depends_on"] = [gate["id"]]
    batch = await api.post("/jobs/batch", {"jobs": jobs})
    batch_id = batch["batch_id"]
    # The page of a DAG the scheduler has taken in (every job blocked behind the gate), not of
    # one whose 10,000 first status events still flood the API while the page loads.
    deadline = time.monotonic() + 60
    while (await stack.statuses([uuid.UUID(batch_id)])).get("blocked", 0) < len(jobs):
        if time.monotonic() > deadline:
            raise TimeoutError("the DAG was not taken in within 60 s")
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    page = await context.new_page()
    t0 = time.perf_counter()
    await page.goto(f"{api.base}/ui/batches/{batch_id}", wait_until="commit")
    await page.wait_for_selector("[data-testid=dag][data-nodes]", timeout=60_000)
    await page.evaluate(FREE)
    interactive = time.perf_counter() - t0
    # The view's own part: from its first request to the graph drawn (the rest is the page,
    # its modules and dagre loading).
    view_ms = float(await page.get_attribute("main", "data-interactive-ms") or "nan")
    await page.wait_for_selector("[data-testid=batch-totals][data-done=true]", timeout=600_000)
    seen_done = time.time()
    last = await stack.last_finished([uuid.UUID(batch_id)])
    groups = await page.eval_on_selector_all(".dag [data-group]", "els => els.length")
    states = await page.eval_on_selector_all(
        ".dag .node", "els => els.filter(e => e.dataset.state !== 'completed').length"
    )
    await page.close()
    if states:
        raise RuntimeError(f"{states} nodes not completed on the page")
    return {
        "interactive_s": interactive,
        "view_s": view_ms / 1000,
        "recolour_lag_s": seen_done - last,
        "groups": groups,
    }


async def _dom(page: Any) -> int:
    found: int = await page.evaluate("document.getElementsByTagName('*').length")
    return found


async def log_follow(stack: Stack, api: Api, context: Any, sizes: Sizes) -> dict[str, float]:
    total = sizes.rate * sizes.seconds
    gate = await api.post("/jobs", {"type": "sleep", "payload": {"seconds": 3}})
    job = await api.post(
        "/jobs",
        {
            "type": "ui_drip",
            "payload": {"lines": total, "per_second": sizes.rate},
            "depends_on": [gate["id"]],
            "timeout_seconds": sizes.seconds * 10 + 60,
        },
    )
    page = await context.new_page()
    await page.goto(f"{api.base}/ui/jobs/{job['id']}")
    await page.wait_for_selector("[data-testid=log]")
    expected = total + 2  # with "started attempt" and "succeeded in" lines
    samples: list[tuple[float, int]] = []
    most_nodes = 0
    deadline = time.monotonic() + sizes.seconds * 10 + 120
    while True:
        shown = int(await page.get_attribute("[data-testid=log]", "data-lines") or 0)
        samples.append((time.time(), shown))
        most_nodes = max(most_nodes, await _dom(page))
        if shown >= expected:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page shows {shown} of {expected} lines")
        await asyncio.sleep(0.25)
    following = await page.get_attribute("[data-testid=log]", "data-following")
    await page.close()
    await api.wait(job["id"], "completed")
    # When the worker logged its first and last line (the lines' own timestamps).
    ran = await stack.fetch(
        "SELECT extract(epoch FROM min(ts)), extract(epoch FROM max(ts)) FROM job_logs"
        " WHERE job_id = %s",
        (uuid.UUID(job["id"]),),
    )
    started, finished = float(ran[0][0]), float(ran[0][1])
    first = next(t for t, n in samples if n > 0)
    return {
        "produced_per_s": total / max(1e-3, finished - started),
        "shown_per_s": total / max(1e-3, samples[-1][0] - first),
        "lag_s": max(0.0, samples[-1][0] - finished),
        "max_dom_nodes": most_nodes,
        "followed": 1.0 if following == "true" else 0.0,
    }


def _copy_lines(db_url: str, job_id: str, count: int) -> None:
    """``count`` more lines after the job's own, seqs contiguous as a worker writes them."""
    with psycopg.connect(psycopg_dsn(db_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(max(seq), 0) FROM job_logs WHERE job_id = %s", (job_id,))
        row = cur.fetchone()
        base = int(row[0]) if row else 0
        sql = "COPY job_logs (job_id, attempt, seq, ts, level, message) FROM STDIN"
        with cur.copy(sql) as copy:
            for seq in range(1, count + 1):
                level = "warning" if seq % 1000 == 0 else "info"
                copy.write_row(
                    (
                        job_id,
                        1,
                        base + seq,
                        "2026-12-01 00:00:00+00",
                        level,
                        f"stored line {seq} of {count}: the quick brown fox",
                    )
                )
        conn.commit()


async def log_1m(stack: Stack, api: Api, context: Any, sizes: Sizes) -> dict[str, float]:
    job = await api.post("/jobs", {"type": "noop"})
    await api.wait(job["id"], "completed")
    await asyncio.to_thread(_copy_lines, stack.db_url, job["id"], sizes.stored_lines)
    page = await context.new_page()
    t0 = time.perf_counter()
    await page.goto(f"{api.base}/ui/jobs/{job['id']}", wait_until="commit")
    await page.wait_for_function(
        "n => Number(document.querySelector('[data-testid=log]')?.dataset.lines ?? 0) >= n",
        arg=sizes.stored_lines,
        timeout=600_000,
        polling=200,
    )
    load = time.perf_counter() - t0
    nodes = await _dom(page)
    t1 = time.perf_counter()
    await page.eval_on_selector("[data-testid=log]", "e => { e.scrollTop = e.scrollHeight / 2 }")
    await page.evaluate(FREE)
    scroll = (time.perf_counter() - t1) * 1000
    middle = await page.text_content(".log-row:nth-child(40)")
    heap = await page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0")
    await page.close()
    if not middle or "stored line" not in middle:
        raise RuntimeError(f"the middle of the log is not drawn: {middle!r}")
    return {"load_s": load, "dom_nodes": nodes, "scroll_ms": scroll, "heap_mb": heap / 2**20}


async def _pages(page: Any, url: str, count: int) -> list[float]:
    await page.goto(url)
    await page.wait_for_selector("tr[data-job-id]")
    times = []
    for _ in range(count):
        first = await page.get_attribute("tr[data-job-id]", "data-job-id")
        t0 = time.perf_counter()
        await page.click("[data-action=older]")
        await page.wait_for_function(
            "id => { const r = document.querySelector('tr[data-job-id]');"
            " return r && r.dataset.jobId !== id }",
            arg=first,
        )
        await page.evaluate(FREE)
        times.append((time.perf_counter() - t0) * 1000)
    return times


async def table_1m(stack: Stack, api: Api, browser: Any, sizes: Sizes) -> dict[str, Any]:
    await asyncio.to_thread(seed, stack.db_url, sizes.table_rows, 0)
    # Seeded rows belong to the tenant ``default``; read them with a key of that tenant.
    made = await asyncio.to_thread(
        run_smartq,
        stack.env,
        "keys",
        "create",
        "--tenant",
        "default",
        "--scope",
        "read",
        "-o",
        "json",
    )
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await context.add_init_script(
        f"sessionStorage.setItem('smartq.key', {json.dumps(json.loads(made)['key'])})"
    )
    page = await context.new_page()
    plain = await _pages(page, f"{api.base}/ui/jobs", 10)
    by_status = await _pages(page, f"{api.base}/ui/jobs?status=completed", 10)
    await context.close()
    return {"page_ms": plain, "page_ms_by_status": by_status}


async def run(sizes: Sizes, runs: int) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = {"dag10k": [], "log_follow": [], "log_1m": []}
    async with _session() as (stack, browser, api, context):
        for _ in range(runs):
            results["dag10k"].append(await dag10k(stack, api, context, sizes))
            results["log_follow"].append(await log_follow(stack, api, context, sizes))
            results["log_1m"].append(await log_1m(stack, api, context, sizes))
        await context.close()
        table = await table_1m(stack, api, browser, sizes)
    return _figures(results, table, sizes)


def _figures(
    results: dict[str, list[dict[str, Any]]], table: dict[str, Any], sizes: Sizes
) -> dict[str, Any]:
    def of(part: str, key: str, target: str | None = None) -> dict[str, Any]:
        return figures.figure([r[key] for r in results[part]], target, 3)

    return {
        "dag10k": {
            "jobs": sizes.layers * 200,
            "interactive_s": of("dag10k", "interactive_s", "<= 3"),
            "view_s": of("dag10k", "view_s"),
            "recolour_lag_s": of("dag10k", "recolour_lag_s"),
            "nodes_drawn": results["dag10k"][0]["groups"],
        },
        "log_follow": _follow_figures(results["log_follow"], sizes),
        "log_1m": {
            "lines": sizes.stored_lines,
            "load_s": of("log_1m", "load_s"),
            "dom_nodes": of("log_1m", "dom_nodes", "<= 3000"),
            "scroll_ms": of("log_1m", "scroll_ms"),
            "heap_mb": of("log_1m", "heap_mb"),
        },
        "table_1m": {
            "rows": sizes.table_rows,
            "page_ms": figures.figure(table["page_ms"], "<= 200", 1),
            "page_ms_by_status": figures.figure(table["page_ms_by_status"], "<= 200", 1),
            "page_ms_p_max": round(max(table["page_ms"] + table["page_ms_by_status"]), 1),
        },
    }


def main(argv: list[str]) -> int:
    return _main("ui", argv, run, runs=1)


async def run_log(sizes: Sizes, runs: int) -> dict[str, Any]:
    """Only the log follow, ``runs`` times (``python -m bench ui-log``)."""
    follows: list[dict[str, Any]] = []
    async with _session() as (stack, _, api, context):
        for _ in range(runs):
            follows.append(await log_follow(stack, api, context, sizes))
    return _follow_figures(follows, sizes)


def _follow_figures(follows: list[dict[str, Any]], sizes: Sizes) -> dict[str, Any]:
    def of(key: str, target: str | None = None) -> dict[str, Any]:
        return figures.figure([r[key] for r in follows], target, 3)

    # Within 2 % of the rate asked: the job's first and last lines bound the span measured.
    keeps_up = f">= {round(sizes.rate * 0.98)}"
    return {
        "rate_per_s": sizes.rate,
        "produced_per_s": of("produced_per_s", keeps_up),
        "shown_per_s": of("shown_per_s", keeps_up),
        "lag_s": of("lag_s", "<= 1"),
        "max_dom_nodes": of("max_dom_nodes", "<= 3000"),
    }


def main_log(argv: list[str]) -> int:
    return _main("ui-log", argv, run_log, runs=3)


def _main(
    name: str,
    argv: list[str],
    go: Callable[[Sizes, int], Coroutine[Any, Any, dict[str, Any]]],
    runs: int,
) -> int:
    options = figures.parse(argv, name)
    sizes = QUICK if options.quick else FULL
    started = time.perf_counter()
    out = asyncio.run(go(sizes, options.pick(runs, 1)))
    figures.emit(name, options, out, started)
    return 0


@contextlib.asynccontextmanager
async def _session() -> AsyncIterator[tuple[Stack, Any, Api, Any]]:
    """A stack whose worker knows this module's jobs, and a browser context holding its key."""
    from playwright.async_api import async_playwright

    env = {"SMARTQ_IMPORTS": "bench.ui"}
    async with Stack(worker_units=64, env=env, taps=False) as stack, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM)
        api = Api(stack)
        key = stack.headers["Authorization"].split(" ", 1)[1]
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        await context.add_init_script(f"sessionStorage.setItem('smartq.key', {json.dumps(key)})")
        try:
            yield stack, browser, api, context
        finally:
            await browser.close()
            await api.http.aclose()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
