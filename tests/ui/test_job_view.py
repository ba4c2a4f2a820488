"""The job view: a live log tail that follows, pauses when the reader scrolls up and keeps at
most a few hundred rows in the DOM; the level filter; cancel and retry buttons."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.ui.harness import Smartq, shot

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]


def lines_shown(page: Page) -> int:
    return int(page.get_by_test_id("log").get_attribute("data-lines") or 0)


def wait_lines(page: Page, more_than: int) -> None:
    page.wait_for_function(
        "n => Number(document.querySelector('[data-testid=log]')?.dataset.lines ?? 0) > n",
        arg=more_than,
    )


def test_log_tail_follows_pauses_and_jumps_back(page: Page, smartq: Smartq) -> None:
    job = smartq.submit(
        type="drip",
        payload={"lines": 4000, "per_second": 600, "warn_every": 100, "progress_every": 150},
    )
    page.goto(smartq.url(f"/ui/jobs/{job['id']}"))
    log = page.get_by_test_id("log")
    wait_lines(page, 600)
    # Progress redraws the page around the log a few times a second: it keeps following.
    expect(page.locator("progress")).to_be_visible()
    expect(log).to_have_attribute("data-following", "true")
    at_bottom = "e => e.scrollTop + e.clientHeight >= e.scrollHeight - 40"
    assert log.evaluate(at_bottom)

    log.hover()
    page.mouse.wheel(0, -3000)  # the reader scrolls up: the tail stops moving
    expect(log).to_have_attribute("data-following", "false")
    held = log.evaluate("e => e.scrollTop")
    before = lines_shown(page)
    wait_lines(page, before + 300)
    assert log.evaluate("e => e.scrollTop") == held  # not yanked back to the bottom
    jump = page.locator("[data-action=jump-latest]")
    expect(jump).to_be_visible()
    expect(jump).to_contain_text(re.compile(r"\d+ new"))
    # Virtualised: a few hundred rows at most, however long the log.
    assert page.locator(".log-row").count() < 200
    assert page.evaluate("document.getElementsByTagName('*').length") < 3000
    shot(page, "job-log-paused")

    jump.click()
    expect(log).to_have_attribute("data-following", "true")
    smartq.wait_status(job["id"], "completed", timeout=30)
    expect(page.get_by_test_id("job-status")).to_contain_text("completed", timeout=10_000)
    stored = smartq.get(f"/jobs/{job['id']}/logs?limit=5000")["lines"]
    expect(log).to_have_attribute("data-lines", str(len(stored)))  # every line, none twice
    assert log.evaluate(at_bottom)

    page.get_by_test_id("log-level").select_option(label="warning and above")
    expect(log).to_have_attribute("data-lines", "40")
    expect(page.locator(".log-row").first).to_contain_text("a warning")
    shot(page, "job-log")


def test_cancel_button_cancels_a_running_job(page: Page, smartq: Smartq) -> None:
    job = smartq.submit(type="sleep", payload={"seconds": 60})
    smartq.wait_status(job["id"], "running")
    page.goto(smartq.url(f"/ui/jobs/{job['id']}"))
    expect(page.get_by_test_id("job-status")).to_contain_text("running")
    page.locator("[data-action=cancel]").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text("Cancel 1 job?")
    dialog.get_by_role("button", name="Cancel 1 job").click()
    expect(page.get_by_test_id("job-status")).to_contain_text("cancelled", timeout=15_000)
    assert smartq.get(f"/jobs/{job['id']}")["status"] == "cancelled"


def test_retry_button_reruns_a_failed_job(page: Page, smartq: Smartq) -> None:
    job = smartq.submit(type="flaky", payload={"fail_times": 1}, retry={"max_attempts": 1})
    smartq.wait_status(job["id"], "failed")
    page.goto(smartq.url(f"/ui/jobs/{job['id']}"))
    expect(page.locator(".attempt")).to_have_count(1)
    expect(page.locator("[data-action=cancel]")).to_have_count(0)  # a finished job
    page.locator("[data-action=retry]").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Retry 1 job").click()
    expect(page.get_by_test_id("job-status")).to_contain_text("completed", timeout=15_000)
    expect(page.locator(".attempt")).to_have_count(2)
    expect(page.locator(".attempt").last).to_have_attribute("data-outcome", "succeeded")
    shot(page, "job-retried")

    # Per attempt, and the whole log as a file.
    stored = smartq.get(f"/jobs/{job['id']}/logs")["lines"]
    first = [line for line in stored if line["attempt"] == 1]
    page.get_by_label("Attempt", exact=True).select_option(label="Attempt 1")
    expect(page.get_by_test_id("log")).to_have_attribute("data-lines", str(len(first)))
    with page.expect_download() as download:
        page.locator("[data-action=download]").click()
    text = Path(download.value.path()).read_text()
    assert len(text.splitlines()) == len(stored)
    assert "attempt=1" in text and "attempt=2" in text


def test_waiting_job_says_why(page: Page, smartq: Smartq) -> None:
    blocker = smartq.submit(type="sleep", name="the-blocker", payload={"seconds": 30})
    waiting = smartq.submit(type="noop", depends_on=[blocker["id"]])
    page.goto(smartq.url(f"/ui/jobs/{waiting['id']}"))
    expect(page.get_by_test_id("waiting-reason")).to_contain_text("the-blocker")
    expect(page.locator("main")).not_to_contain_text("null")  # nothing absent shown as "null"
    expect(page.get_by_test_id("depends-on").locator("a")).to_have_attribute(
        "href", f"/ui/jobs/{blocker['id']}"
    )
    shot(page, "job-waiting")
    page.locator("[data-action=cancel]").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Cancel 1 job").click()
    expect(page.get_by_test_id("job-status")).to_contain_text("cancelled")
    smartq.cancel(blocker["id"])


def test_log_tail_loses_no_line_when_its_stream_drops(page: Page, smartq: Smartq) -> None:
    job = smartq.submit(type="drip", payload={"lines": 1500, "per_second": 300})
    page.goto(smartq.url(f"/ui/jobs/{job['id']}"))
    wait_lines(page, 200)
    smartq.stop_api()  # lines go on being written and stored while the page has no stream
    expect(page.locator("#live")).not_to_have_attribute("data-live", "on")
    smartq.start_api()
    expect(page.locator("#live")).to_have_attribute("data-live", "on", timeout=20_000)
    smartq.wait_status(job["id"], "completed", timeout=30)
    stored = smartq.get(f"/jobs/{job['id']}/logs?limit=5000")["lines"]
    log = page.get_by_test_id("log")
    expect(log).to_have_attribute("data-lines", str(len(stored)), timeout=10_000)
    expect(log).to_have_attribute("data-following", "true")
