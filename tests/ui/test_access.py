"""Keys: with keys required the dashboard shows no data until a key is typed, keeps it out of
every URL, and sends it as a header (and as the stream's subprotocol); ``smartq dev`` on
loopback needs none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.apikeys import secret_of
from tests.e2e.procs import free_port, processes, wait_ready
from tests.ui.harness import Smartq, shot

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]


def test_no_data_without_a_key(keyless_page: Page, smartq: Smartq) -> None:
    page = keyless_page
    job = smartq.submit(type="noop", name="secret-job")
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))

    page.goto(smartq.url("/ui/jobs?type=noop"))
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("tr[data-job-id]")).to_have_count(0)
    expect(page.get_by_text("secret-job")).to_have_count(0)
    shot(page, "key-prompt")

    page.get_by_label("Key", exact=True).fill("sq_wrong_nottherightsecret")
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#key-error")).to_contain_text("refused")
    expect(page.locator("tr[data-job-id]")).to_have_count(0)

    page.get_by_label("Key", exact=True).fill(smartq.key)
    page.get_by_role("button", name="Use key").click()
    expect(dialog).to_be_hidden()
    expect(page.locator(f'tr[data-job-id="{job["id"]}"]')).to_be_visible()
    expect(page.locator("#live")).to_have_attribute("data-live", "on")  # the stream took it
    assert page.evaluate("sessionStorage.getItem('smartq.key')") == smartq.key

    page.goto(smartq.url(f"/ui/jobs/{job['id']}"))  # asked once: the tab remembers it
    expect(page.get_by_test_id("job-status")).to_contain_text("completed")
    expect(dialog).to_be_hidden()
    secret = secret_of(smartq.key)  # (it may itself hold "_")
    assert not [u for u in urls + sockets if secret in u]  # never in a URL


@pytest.fixture
def dev_base(tmp_path: Path) -> Iterator[str]:
    """``smartq dev`` on loopback, on its embedded default, as ``./scripts/dev`` starts it."""
    port = free_port()
    env = {"SMARTQ_SQLITE_PATH": str(tmp_path / "dev.sqlite3")}
    with processes(env, tmp_path) as procs:
        procs.start("dev", "dev", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, timeout=60)
        yield base


def test_dev_on_loopback_needs_no_key(browser: Browser, dev_base: str) -> None:
    import httpx

    r = httpx.post(f"{dev_base}/jobs", json={"type": "noop", "name": "open-job"})
    assert r.status_code == 201, r.text
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        page = context.new_page()
        page.goto(f"{dev_base}/ui/jobs")
        expect(page.locator(f'tr[data-job-id="{r.json()["id"]}"]')).to_be_visible()
        expect(page.locator("#key-dialog")).to_be_hidden()
    finally:
        context.close()


def test_admin_panel_makes_and_revokes_keys(page: Page, smartq: Smartq) -> None:
    page.goto(smartq.url("/ui/keys"))
    expect(page.locator("[data-nav=keys]")).to_be_visible()  # an admin key: the panel shows
    page.get_by_role("textbox", name="Tenant").fill("acme")
    page.get_by_label("Label").fill("made in the dashboard")
    page.get_by_role("button", name="Create key").click()
    made = page.get_by_test_id("new-key")
    expect(made).to_contain_text("sq_")
    key = made.inner_text().strip()
    key_id = key.split("_")[1]
    row = page.locator(f'tr[data-key-id="{key_id}"]')
    expect(row).to_contain_text("acme")
    shot(page, "keys")

    # The new key is a tenant's: the dashboard shows it no admin panel and none of default's jobs.
    other = page.context.browser.new_context()  # type: ignore[union-attr]
    try:
        tab = other.new_page()
        tab.add_init_script(f"sessionStorage.setItem('smartq.key', '{key}')")
        tab.goto(smartq.url("/ui/jobs"))
        expect(tab.locator("td.empty")).to_contain_text("No jobs match.")
        expect(tab.locator("[data-nav=keys]")).to_be_hidden()
    finally:
        other.close()

    # An admin narrows every view to one tenant, and back to all of them.
    page.goto(smartq.url("/ui/jobs"))
    expect(page.locator("tr[data-job-id]").first).to_be_visible()
    page.get_by_label("Tenant shown").select_option("acme")
    expect(page.locator("td.empty")).to_contain_text("No jobs match.")
    page.reload()  # the choice holds for the tab
    expect(page.get_by_label("Tenant shown")).to_have_value("acme")
    expect(page.locator("td.empty")).to_contain_text("No jobs match.")
    page.get_by_label("Tenant shown").select_option("")
    expect(page.locator("tr[data-job-id]").first).to_be_visible()

    page.goto(smartq.url("/ui/keys"))
    row.locator("[data-action=revoke]").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Revoke").click()
    expect(row).to_contain_text("revoked")
