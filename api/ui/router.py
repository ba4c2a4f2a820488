"""``/ui``: the dashboard's app shell for every path under it, and its static files.

Deep links (``/ui/jobs/{id}``, ``/ui/batches/{id}``, ``/ui/jobs?status=failed``) all answer
with the same shell; the page's own router draws the view. The shell holds no data and needs
no key: everything shown comes from API calls that present the key the reader typed in.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
PREFIX = "/ui"

#: Scripts and styles from this origin only, no inline script: a key kept in sessionStorage
#: is only as safe as the page that can read it. ``connect-src 'self'`` covers the same-origin
#: WebSocket in current browsers.
_SECURITY = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _shell() -> HTMLResponse:
    return HTMLResponse((STATIC / "index.html").read_text("utf-8"), headers=_SECURITY)


@router.get("")
async def ui_root() -> HTMLResponse:
    """The dashboard's overview."""
    return _shell()


@router.get("/{path:path}")
async def ui_page(path: str) -> HTMLResponse:
    """Any view by its URL: the same shell, which routes in the page."""
    return _shell()


def install(app: FastAPI) -> None:
    """Serve the dashboard on ``app``: static files first, so the shell's catch-all path
    never shadows them."""
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="ui-static")
    app.include_router(router)
