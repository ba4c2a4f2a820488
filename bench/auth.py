"""What authentication costs the API: ``python -m bench auth [--quick] [--runs N]``.

One API app in this process (SQLite file, in-process broker, no network), driven through ASGI
by httpx, in rounds that alternate keys on and keys off on the same app code, so the machine's
noise falls on both alike. Per request it measures the process's CPU time (client and app
together: the client's share is the same in both modes, so the difference is what checking the
key costs). Figures, median/min/max over the rounds:

* ``cpu_ms_{on,off}_{read,submit}``: CPU per ``GET /jobs/{id}`` (one indexed read) and per
  ``POST /jobs`` with keys on (a tenant's key, verified from the cache as nearly every request
  is) and off;
* ``auth_cpu_ms_{read,submit}``: on minus off, per round (target: <= 0.2 ms, issue 14);
* ``verify_us``: one cached :meth:`KeyVerifier.verify` alone (hash, constant-time compare).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from api.app import create_app
from bench import figures
from smartq import keystore, migrate
from smartq.brokers.memory import InMemoryBroker
from smartq.db import create_async
from smartq.keys import Scope
from smartq.keystore import KeyVerifier
from smartq.settings import Settings


async def _cpu_per_request(client: httpx.AsyncClient, requests: int, body: Any) -> float:
    """CPU milliseconds per request, for ``requests`` requests (after a few to warm up)."""
    path = "/jobs"
    for _ in range(10):
        await (client.post(path, json=body) if body is not None else client.get(path))
    if body is None:
        job_id = (await client.get("/jobs?limit=1")).json()["items"][0]["id"]
        path = f"/jobs/{job_id}"
    start = time.process_time()
    for _ in range(requests):
        r = await (client.post(path, json=body) if body is not None else client.get(path))
        assert r.status_code in (200, 201), r.text
    return (time.process_time() - start) * 1000 / requests


async def _verify_us(engine: Any, key: str, n: int) -> float:
    verifier = KeyVerifier(3600)
    async with engine.connect() as conn:
        await verifier.verify(conn, key)  # read once; the rest come from the cache
        start = time.perf_counter()
        for _ in range(n):
            assert await verifier.verify(conn, key) is not None
        return (time.perf_counter() - start) * 1e6 / n


async def run(options: figures.Options) -> dict[str, Any]:
    rounds = options.pick(7, 2)
    requests = 300 if options.quick else 1500
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        migrate.upgrade(url)
        engine = create_async(url)
        broker = InMemoryBroker()
        await broker.connect()
        async with engine.connect() as conn:
            key = (await keystore.create_key(conn, tenant="bench", scopes=set(Scope))).key
        apps = {
            mode: create_app(Settings(database_url=url, auth=mode), engine=engine, broker=broker)
            for mode in ("on", "off")
        }
        cpu: dict[str, list[float]] = {}
        async with contextlib.AsyncExitStack() as running:
            for app in apps.values():
                await running.enter_async_context(app.router.lifespan_context(app))
            for _ in range(rounds):
                for mode in ("on", "off"):
                    app = apps[mode]
                    headers = {"Authorization": f"Bearer {key}"} if mode == "on" else {}
                    transport = httpx.ASGITransport(app=app)
                    async with httpx.AsyncClient(
                        transport=transport, base_url="http://bench", headers=headers
                    ) as client:
                        for what, body in (("submit", {"type": "noop"}), ("read", None)):
                            value = await _cpu_per_request(client, requests, body)
                            cpu.setdefault(f"cpu_ms_{mode}_{what}", []).append(value)
            verify = [await _verify_us(engine, key, 20_000) for _ in range(rounds)]
        await broker.close()
        await engine.dispose()
    out: dict[str, Any] = {k: figures.figure(v, digits=4) for k, v in sorted(cpu.items())}
    for what in ("read", "submit"):
        diffs = [
            a - b for a, b in zip(cpu[f"cpu_ms_on_{what}"], cpu[f"cpu_ms_off_{what}"], strict=True)
        ]
        out[f"auth_cpu_ms_{what}"] = figures.figure(diffs, "<= 0.2", digits=4)
    out["verify_us"] = figures.figure(verify, digits=2)
    out["rounds"], out["requests_per_round"] = rounds, requests
    return out


def main(argv: list[str]) -> int:
    return figures.run_main("auth", argv, run)


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
