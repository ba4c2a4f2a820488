"""The jobs table (filters kept in the URL, keyset paging, bulk actions after a confirmation
with the count), the dead letters (retry with descendants), and the other views' screens."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.ui.harness import FINAL, Smartq, shot

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]


def rows(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("table.grid tbody tr[data-job-id]")


def test_filtered_jobs_url_reloads_to_the_same_view(page: Page, smartq: Smartq) -> None:
    good = [{"key": f"ok{i}", "type": "noop"} for i in range(3)]
    bad = [
        {
            "key": f"bad{i}",
            "type": "flaky",
            "payload": {"fail_times": -1},
            "retry": {"max_attempts": 1},
        }
        for i in range(2)
    ]
    batch_id, ids = smartq.batch(*good, *bad)
    for job_id in ids.values():
        smartq.wait_status(job_id, *FINAL)

    page.goto(smartq.url("/ui/jobs"))
    page.get_by_label("Batch").fill(batch_id)
    page.get_by_label("Batch").press("Enter")
    expect(rows(page)).to_have_count(5)
    page.locator(".chip", has_text="failed").click()  # a status chip applies at once
    expect(page).to_have_url(re.compile(r"status=failed"))
    assert parse_qs(urlsplit(page.url).query) == {"status": ["failed"], "batch_id": [batch_id]}
    expect(rows(page)).to_have_count(2)

    page.reload()
    expect(rows(page)).to_have_count(2)
    expect(page.get_by_label("Batch")).to_have_value(batch_id)
    expect(page.locator(".chip input[value=failed]")).to_be_checked()
    assert {r.get_attribute("data-job-id") for r in rows(page).all()} == {ids["bad0"], ids["bad1"]}
    shot(page, "jobs-filtered")


def test_keyset_paging_and_bulk_cancel_with_a_count(page: Page, smartq: Smartq) -> None:
    waiting = [{"key": f"w{i}", "type": "noop", "depends_on": ["gate"]} for i in range(55)]
    batch_id, ids = smartq.batch(
        {"key": "gate", "type": "sleep", "payload": {"seconds": 60}}, *waiting
    )
    smartq.wait_status(ids["w54"], "blocked")
    page.goto(smartq.url(f"/ui/jobs?batch_id={batch_id}&status=blocked"))
    expect(rows(page)).to_have_count(50)
    page.locator("[data-action=older]").click()
    expect(page).to_have_url(re.compile(r"[?&]cursor="))
    expect(rows(page)).to_have_count(5)
    page.locator("[data-action=newer]").click()
    expect(rows(page)).to_have_count(50)

    page.get_by_role("button", name="Select all matching").click()
    expect(page.get_by_test_id("selected-count")).to_have_text("all 55 matching selected")
    page.locator("[data-action=bulk-cancel]").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text("Cancel 55 jobs?")
    shot(page, "jobs-bulk-confirm")
    dialog.get_by_role("button", name="Cancel 55 jobs").click()
    expect(page.locator(".toast")).to_contain_text("55 cancelled")
    expect(rows(page)).to_have_count(0)  # none is blocked any more
    for key in ("w0", "w54"):
        assert smartq.get(f"/jobs/{ids[key]}")["status"] == "cancelled"
    smartq.cancel(ids["gate"])


def test_dead_letter_retried_with_descendants_reruns(page: Page, smartq: Smartq) -> None:
    _, ids = smartq.batch(
        {
            "key": "dead",
            "type": "flaky",
            "payload": {"fail_times": 1},
            "retry": {"max_attempts": 1},
        },
        {"key": "after", "type": "noop", "depends_on": ["dead"]},
    )
    smartq.wait_status(ids["after"], "cancelled")
    page.goto(smartq.url("/ui/dead-letters"))
    row = page.locator(f'tr[data-job-id="{ids["dead"]}"]')
    expect(row).to_contain_text("RetryableError")
    shot(page, "dead-letters")
    row.locator("[data-action=retry]").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text("with the jobs cancelled because of them")
    dialog.get_by_role("button", name="Retry 1 job").click()
    expect(page.locator(".toast")).to_contain_text("1 resubmitted")
    assert smartq.wait_status(ids["dead"], "completed")["attempts"] == 2
    smartq.wait_status(ids["after"], "completed")
    page.reload()
    expect(page.locator(f'tr[data-job-id="{ids["dead"]}"]')).to_have_count(0)

    # A job that fails for good while the page is open is announced.
    expect(page.locator("#live")).to_have_attribute("data-live", "on")
    smartq.submit(type="flaky", payload={"fail_times": -1}, retry={"max_attempts": 1})
    expect(page.get_by_test_id("new-jobs")).to_have_text("1 new dead letter — show")


def test_overview_workers_and_batches_screens(page: Page, smartq: Smartq) -> None:
    smartq.batch({"key": "a", "type": "noop"}, {"key": "b", "type": "noop", "depends_on": ["a"]})
    page.goto(smartq.url("/ui"))
    expect(page.locator(".tile[data-status=completed]")).to_be_visible(timeout=10_000)
    expect(page.locator(".worker .bar")).to_have_count(2)
    shot(page, "overview")
    busy = smartq.submit(type="sleep", payload={"seconds": 20}, cpu_units=3, memory_mb=2048)
    smartq.wait_status(busy["id"], "running")
    page.keyboard.press("g")
    page.keyboard.press("w")  # keyboard navigation between views
    expect(page).to_have_url(smartq.url("/ui/workers"))
    worker = page.locator(".worker").first
    cpu = worker.get_by_role("meter").first
    expect(cpu).to_have_attribute("aria-valuemax", "8")
    expect(worker.locator(f'.running-jobs a[href="/ui/jobs/{busy["id"]}"]')).to_be_visible()
    assert int(cpu.get_attribute("aria-valuenow") or 0) >= 3  # its 3 cpu units are in use
    shot(page, "workers")
    smartq.cancel(busy["id"])
    page.get_by_role("link", name="Batches").click()
    expect(page.locator("tr[data-batch-id]").first).to_be_visible()
    shot(page, "batches")


def test_new_jobs_matching_the_filter_are_announced(page: Page, smartq: Smartq) -> None:
    gate = smartq.submit(type="sleep", payload={"seconds": 30})
    page.goto(smartq.url("/ui/jobs?status=blocked&type=noop"))
    expect(page.locator("#live")).to_have_attribute("data-live", "on")
    job = smartq.submit(type="noop", depends_on=[gate["id"]])
    notice = page.get_by_test_id("new-jobs")
    expect(notice).to_have_text("1 new job — show")
    notice.click()
    expect(page.locator(f'tr[data-job-id="{job["id"]}"]')).to_be_visible()
    expect(notice).to_be_hidden()
    smartq.cancel(gate["id"])


def test_the_batches_list_follows_its_batches_live(page: Page, smartq: Smartq) -> None:
    batch_id, _ = smartq.batch(
        {"key": "slow", "type": "sleep", "payload": {"seconds": 2}},
        {"key": "after", "type": "noop", "depends_on": ["slow"]},
    )
    page.goto(smartq.url("/ui/batches"))
    page.evaluate("window.__sameDocument = true")
    mine = page.locator(f'tr[data-batch-id="{batch_id}"]')
    expect(mine).to_have_attribute("data-done", "false")
    expect(mine.locator(".batch-state")).to_have_text("running")
    expect(page.locator("#live")).to_have_attribute("data-live", "on")
    # its totals, state and duration redraw in place as its jobs end
    expect(mine).to_have_attribute("data-done", "true", timeout=20_000)
    expect(mine.locator(".batch-state")).to_have_text("done")
    expect(mine.locator(".mini")).to_contain_text("2")
    newer, _ = smartq.batch({"key": "x", "type": "noop"})
    notice = page.get_by_test_id("new-batches")
    expect(notice).to_have_text("1 new batch — show", timeout=10_000)
    assert page.evaluate("window.__sameDocument") is True  # live, not by reloading
    notice.click()
    expect(page.locator(f'tr[data-batch-id="{newer}"]')).to_be_visible()
    shot(page, "batches-live")
