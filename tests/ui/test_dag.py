"""The batch view: nodes recolour live from the stream (``data-state``), a failure shows with
the jobs cancelled because of it, wide fan-outs collapse and expand, a click opens the job."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Page, expect

from tests.ui.harness import Smartq, shot

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]


def node(page: Page, job_id: str):  # type: ignore[no-untyped-def]
    return page.locator(f'.dag [data-job-id="{job_id}"]')


def test_nodes_turn_completed_live(page: Page, smartq: Smartq) -> None:
    fan = [{"key": f"part{i}", "type": "noop", "depends_on": ["gate"]} for i in range(20)]
    batch_id, ids = smartq.batch(
        {"key": "gate", "type": "sleep", "payload": {"seconds": 4}},
        {"key": "after", "type": "sleep", "payload": {"seconds": 0.1}, "depends_on": ["gate"]},
        *fan,
        {"key": "end", "type": "noop", "depends_on": ["after", *[f["key"] for f in fan]]},
    )
    page.goto(smartq.url(f"/ui/batches/{batch_id}"))
    page.evaluate("window.__sameDocument = true")
    # Drawn while the gate still sleeps: nothing downstream has completed yet.
    expect(node(page, ids["gate"])).to_have_attribute("data-state", re.compile("ready|running"))
    assert node(page, ids["end"]).get_attribute("data-state") in {"pending", "blocked"}
    group = page.locator(".dag [data-group]")
    expect(group).to_have_count(1)  # 20 noops of one layer: one node with counts
    expect(group).to_contain_text("20 × noop")
    shot(page, "batch-running")

    for key in ("gate", "after", "end"):
        expect(node(page, ids[key])).to_have_attribute("data-state", "completed", timeout=20_000)
    expect(group).to_have_attribute("data-state", "completed")
    assert '"completed":20' in (group.get_attribute("data-counts") or "")
    assert page.evaluate("window.__sameDocument") is True  # live, not by reloading
    expect(page.get_by_test_id("batch-totals")).to_have_attribute("data-done", "true")
    shot(page, "batch-completed")

    group.focus()
    page.keyboard.press("Enter")  # expands, by keyboard as by click
    expect(page.locator(".dag [data-group]")).to_have_count(0)
    expect(node(page, ids["part7"])).to_have_attribute("data-state", "completed")
    node(page, ids["after"]).click()
    expect(page).to_have_url(smartq.url(f"/ui/jobs/{ids['after']}"))
    expect(page.get_by_test_id("job-status")).to_contain_text("completed")


def test_failing_node_fails_and_its_descendants_are_cancelled(page: Page, smartq: Smartq) -> None:
    batch_id, ids = smartq.batch(
        {"key": "wait", "type": "sleep", "payload": {"seconds": 3}},
        {
            "key": "broken",
            "type": "flaky",
            "payload": {"fail_times": -1, "retryable": False},
            "depends_on": ["wait"],
        },
        {"key": "child", "type": "noop", "depends_on": ["broken"]},
        {"key": "grandchild", "type": "noop", "depends_on": ["child"]},
        {"key": "sibling", "type": "noop", "depends_on": ["wait"]},
    )
    page.goto(smartq.url(f"/ui/batches/{batch_id}"))
    expect(node(page, ids["broken"])).to_have_attribute("data-state", re.compile("blocked|pending"))
    expect(node(page, ids["broken"])).to_have_attribute("data-state", "failed", timeout=20_000)
    for key in ("child", "grandchild"):
        expect(node(page, ids[key])).to_have_attribute("data-state", "cancelled")
    expect(node(page, ids["sibling"])).to_have_attribute("data-state", "completed")
    # The icon says it as well as the colour.
    expect(node(page, ids["broken"]).locator(".icon")).to_have_text("✕")
    expect(node(page, ids["child"]).locator(".icon")).to_have_text("⊘")
    report = page.locator(".failures")
    expect(report).to_contain_text("1 failed")
    expect(report).to_contain_text("NonRetryableError")
    shot(page, "batch-failed")


def test_a_dropped_stream_reconnects_and_catches_up(page: Page, smartq: Smartq) -> None:
    batch_id, ids = smartq.batch(
        {"key": "slow", "type": "sleep", "payload": {"seconds": 5}},
        {"key": "next", "type": "noop", "depends_on": ["slow"]},
    )
    page.goto(smartq.url(f"/ui/batches/{batch_id}"))
    expect(page.locator("#live")).to_have_attribute("data-live", "on")
    expect(node(page, ids["slow"])).to_have_attribute("data-state", "running")
    smartq.stop_api()  # the socket drops; the jobs go on without it
    expect(page.locator("#live")).not_to_have_attribute("data-live", "on")
    smartq.wait_status_in_db(ids["next"], "completed")
    smartq.start_api()
    # Subscribed again, the page gets the statuses it missed from the stream's snapshot.
    expect(page.locator("#live")).to_have_attribute("data-live", "on", timeout=20_000)
    expect(node(page, ids["next"])).to_have_attribute("data-state", "completed")
    expect(node(page, ids["slow"])).to_have_attribute("data-state", "completed")


def test_a_large_batch_is_read_whole(page: Page, smartq: Smartq) -> None:
    # More than two pages of 500, read as slices of created_at at once: none missed, none twice.
    jobs = [{"key": f"j{i}", "type": "noop"} for i in range(1_234)]
    jobs += [{"key": "last", "type": "noop", "depends_on": ["j0", "j1233"]}]
    batch_id, ids = smartq.batch(*jobs)
    page.goto(smartq.url(f"/ui/batches/{batch_id}"))
    expect(page.get_by_test_id("batch-totals")).to_contain_text("1,235")
    group = page.locator(".dag [data-group]")
    expect(group).to_contain_text("1,234 × noop")
    expect(node(page, ids["last"])).to_be_visible()
    counts = json.loads(group.get_attribute("data-counts") or "{}")
    assert sum(counts.values()) == 1_234


def test_a_long_chain_is_drawn_in_bands(page: Page, smartq: Smartq) -> None:
    gate = smartq.submit(type="sleep", payload={"seconds": 60})
    chain = [{"key": "c0", "type": "noop", "depends_on": [gate["id"]]}]
    chain += [{"key": f"c{i}", "type": "noop", "depends_on": [f"c{i - 1}"]} for i in range(1, 2000)]
    batch_id, _ = smartq.batch(*chain)
    page.goto(smartq.url(f"/ui/batches/{batch_id}"))
    frame = page.get_by_test_id("dag")
    expect(frame).to_have_attribute("data-nodes", re.compile(r"^\d+$"))
    assert int(frame.get_attribute("data-nodes") or 0) <= 600  # 2,000 layers, drawn in bands
    groups = page.locator(".dag [data-group]")
    counts = [json.loads(g.get_attribute("data-counts") or "{}") for g in groups.all()]
    assert sum(sum(c.values()) for c in counts) == 2_000
    smartq.cancel(gate["id"])


def test_jobs_a_job_submitted_hang_off_it_and_link_back(page: Page, smartq: Smartq) -> None:
    batch_id, ids = smartq.batch({"key": "parent", "type": "ui_fan_out"})
    parent = smartq.wait_status(ids["parent"], "completed")
    then = parent["result"]["continuation"]
    smartq.wait_status(then, "completed")
    page.goto(smartq.url(f"/ui/batches/{batch_id}"))
    expect(page.locator(".dag [data-job-id]")).to_have_count(4)
    spawned = page.locator(f'.dag .edges path[data-kind="spawned"][data-from="{ids["parent"]}"]')
    expect(spawned).to_have_count(2)  # parent ⇢ each child; the continuation comes after them
    expect(page.locator(f'.dag .edges path[data-kind="depends"][data-to="{then}"]')).to_have_count(
        2
    )
    shot(page, "batch-spawned")
    node(page, then).click()
    expect(page).to_have_url(smartq.url(f"/ui/jobs/{then}"))
    expect(page.locator("dl.fields")).to_contain_text(ids["parent"])
    page.get_by_role("link", name="jobs it submitted").click()
    # (the job page redraws live: wait for the list itself, not for rows of the page before)
    expect(page).to_have_url(smartq.url(f"/ui/jobs?parent_id={then}"))
    expect(page.locator("tbody tr[data-job-id]")).to_have_count(0)  # it submitted nothing
    page.goto(smartq.url(f"/ui/jobs?parent_id={ids['parent']}"))
    expect(page.locator("tbody tr[data-job-id]")).to_have_count(3)
