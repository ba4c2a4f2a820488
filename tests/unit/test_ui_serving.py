"""The dashboard's serving: every /ui path answers with the same shell (deep links paste),
static files are served beside it, and the vendored files are the ones the manifest records."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.ui import vendor
from api.ui.router import STATIC
from smartq.settings import Settings


@pytest.fixture
async def ui() -> AsyncIterator[httpx.AsyncClient]:
    # The shell and its files need no database, broker or key: the lifespan is not run.
    app = create_app(Settings(database_url="sqlite:///unused.sqlite3", auth="on"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://smartq") as client:
        yield client


@pytest.mark.parametrize(
    "path",
    [
        "/ui",
        "/ui/",
        "/ui/jobs",
        "/ui/jobs?status=failed&type=sleep",
        "/ui/jobs/5b6f3d0e-0c1a-4f55-9a53-0d7b0c6c1f4e",
        "/ui/batches/5b6f3d0e-0c1a-4f55-9a53-0d7b0c6c1f4e",
        "/ui/dead-letters",
    ],
)
async def test_deep_links_serve_the_shell(ui: httpx.AsyncClient, path: str) -> None:
    r = await ui.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/ui/static/js/main.js">' in r.text
    scripts = r.headers["content-security-policy"].split("; ")[1]
    assert scripts == "script-src 'self'"  # no inline script can read the key


async def test_static_files_are_served_and_not_shadowed_by_the_shell(
    ui: httpx.AsyncClient,
) -> None:
    r = await ui.get("/ui/static/js/main.js")
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    assert (await ui.get("/ui/static/js/nothing.js")).status_code == 404


def test_every_module_import_resolves_to_a_file() -> None:
    """No build step: what the browser imports must be there, vendored files included."""
    for module in (STATIC / "js").rglob("*.js"):
        for target in re.findall(r'from "(\.[^"]+)"', module.read_text("utf-8")):
            assert (module.parent / target).resolve().is_file(), f"{module.name}: {target}"


def test_vendored_files_match_the_manifest() -> None:
    libraries = vendor.load_manifest()
    assert libraries and all(lib.integrity.startswith("sha512-") for lib in libraries)
    assert vendor.check(libraries) == []
    listed = {lib.file for lib in libraries} | {lib.license_file for lib in libraries}
    on_disk = {p.name for p in vendor.VENDOR.iterdir()} - {"manifest.json"}
    assert on_disk == listed  # nothing vendored without a record


def test_a_changed_vendored_file_is_reported(tmp_path: Path) -> None:
    lib = vendor.load_manifest()[0]
    (tmp_path / lib.file).write_bytes((vendor.VENDOR / lib.file).read_bytes() + b"\n")
    assert vendor.check([lib], root=tmp_path) == [
        f"{lib.file}: sha256 differs from the manifest ({lib.package})"
    ]
