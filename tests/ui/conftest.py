"""Fixtures of the dashboard tests: one smartq (real processes) per session, Chromium per module,
a fresh browser context per test with its screenshot saved under ``artifacts/ui/``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.databases import PostgresDatabases
from tests.services import CI, require_rabbitmq
from tests.ui.harness import ARTIFACTS, Smartq, key_script, require_chromium, running_smartq

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - a laptop without the dev dependencies
    if CI:
        raise
    pytest.skip("playwright is not installed", allow_module_level=True)


@pytest.fixture(scope="session")
def smartq(
    postgres_databases: PostgresDatabases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Smartq]:
    url = postgres_databases.create()
    try:
        with running_smartq(url, require_rabbitmq(), tmp_path_factory.mktemp("ui")) as running:
            yield running
    finally:
        postgres_databases.drop(url)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Per module, not per session: Playwright's sync API keeps an event loop running in this
    # thread while it is started, and the asyncio tests collected after tests/ui (tests/unit)
    # cannot start theirs until it stops.
    path = require_chromium()
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=path)
        yield chromium
        chromium.close()


def _page(browser: Browser, request: pytest.FixtureRequest, init: str | None) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    if init:
        context.add_init_script(init)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        context.close()
    assert not errors, f"errors in the page: {errors}"


@pytest.fixture
def page(browser: Browser, smartq: Smartq, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page whose tab already holds the admin key (as after typing it once)."""
    yield from _page(browser, request, key_script(smartq.key))


@pytest.fixture
def keyless_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a fresh tab with no key."""
    yield from _page(browser, request, None)
