"""The fault proxy's control interface: HTTP/JSON on loopback, and its client.

``GET /paths`` lists every path with its toxics and connections; ``PATCH /paths/{name}`` with
some toxics (``{"latency_ms": 200}``) changes those and keeps the others; ``DELETE
/paths/{name}/toxics`` clears one path, ``DELETE /toxics`` every path.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from pathlib import Path as FilePath
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from smartq.cluster.proxy import Address, Path
from smartq.cluster.toxics import ToxicError, Toxics

log = logging.getLogger(__name__)


def control_app(paths: Mapping[str, Path]) -> Starlette:
    """The control routes over ``paths`` (name → path)."""

    def found(request: Request) -> Path | None:
        return paths.get(request.path_params["name"])

    async def listing(request: Request) -> JSONResponse:
        return JSONResponse([p.describe() for p in paths.values()])

    async def change(request: Request) -> JSONResponse:
        path = found(request)
        if path is None:
            return JSONResponse({"error": "no such path"}, status_code=404)
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ToxicError("the body is a JSON object of toxics")
            await path.apply(path.toxics.changed(body))
        except (ToxicError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse(path.describe())

    async def clear_one(request: Request) -> JSONResponse:
        path = found(request)
        if path is None:
            return JSONResponse({"error": "no such path"}, status_code=404)
        await path.apply(Toxics())
        return JSONResponse(path.describe())

    async def clear_all(request: Request) -> JSONResponse:
        for path in paths.values():
            if not path.toxics.clean:
                await path.apply(Toxics())
        return JSONResponse([p.describe() for p in paths.values()])

    return Starlette(
        routes=[
            Route("/paths", listing, methods=["GET"]),
            Route("/paths/{name}", change, methods=["PATCH"]),
            Route("/paths/{name}/toxics", clear_one, methods=["DELETE"]),
            Route("/toxics", clear_all, methods=["DELETE"]),
        ]
    )


def load_paths(config: FilePath) -> dict[str, Path]:
    """Paths from a JSON list of ``{"name", "listen", "upstream"}`` (addresses as host:port)."""
    entries = json.loads(config.read_text())
    return {
        e["name"]: Path(e["name"], Address.parse(e["listen"]), Address.parse(e["upstream"]))
        for e in entries
    }


async def serve(config: FilePath, control: Address) -> None:
    """Open every path of ``config``, then serve the control interface until stopped."""
    import uvicorn

    paths = load_paths(config)
    for path in paths.values():
        await path.start()
    server = uvicorn.Server(
        uvicorn.Config(
            control_app(paths),
            host=control.host,
            port=control.port,
            log_config=None,
            access_log=False,
        )
    )
    log.info("proxy: %d paths", len(paths), extra={"action": "proxy.start"})
    try:
        await server.serve()
    finally:
        await asyncio.gather(*(p.stop() for p in paths.values()))


class ProxyClient:
    """The control interface from a script or a test (synchronous)."""

    def __init__(self, base_url: str, timeout: float = 10) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout)

    def paths(self) -> list[dict[str, Any]]:
        return self._ok(self.http.get("/paths"))  # type: ignore[no-any-return]

    def set(self, name: str, **toxics: float | bool) -> dict[str, Any]:
        """Change some toxics of path ``name``; the others stay as they are."""
        return self._ok(self.http.patch(f"/paths/{name}", json=toxics))  # type: ignore[no-any-return]

    def clear(self, name: str | None = None) -> None:
        """No toxics on path ``name``, or on every path."""
        self._ok(self.http.delete("/toxics" if name is None else f"/paths/{name}/toxics"))

    def healthy(self) -> bool:
        try:
            self.paths()
        except httpx.HTTPError:
            return False
        return True

    def close(self) -> None:
        self.http.close()

    @staticmethod
    def _ok(response: httpx.Response) -> Any:
        if response.status_code != 200:
            raise ToxicError(f"proxy control: {response.status_code} {response.text}")
        return response.json()
