"""Batch callbacks delivered by the leading scheduler to a real HTTP receiver on 127.0.0.1
(allowed by SMARTQ_CALLBACK_ALLOWED_HOSTS), on PostgreSQL + RabbitMQ and embedded: the three
events arrive with valid signatures and the delivery id in header and body, the finished
batch's report names passed and failed jobs, a receiver answering 500 twice gets the third
attempt (logged with its codes), and a host name resolving to loopback is refused at
delivery, logged with the reason and never retried. (A scheduler killed between the batch's
end and the delivery: tests/e2e/test_callback_processes.)"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from smartq import callbacks
from tests.receiver import Receiver, receiving
from tests.services import unavailable
from tests.system import System, until

SECRET = "a-secret-only-the-test-knows"
QUICK = {
    "callback_poll_seconds": 0.1,
    "callback_retry_base_seconds": 0.2,
    "callback_secret": SECRET,
    "callback_allowed_hosts": ["127.0.0.1"],
}
ALL = ["batch.started", "batch.finished", "job.failed"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


async def submit(system: System, jobs: list[dict[str, Any]], hooks: list[dict[str, Any]]) -> str:
    answer = await system.client.post("/jobs/batch", json={"jobs": jobs, "callbacks": hooks})
    assert answer.status_code == 201, answer.text
    batch_id: str = answer.json()["batch_id"]
    return batch_id


async def deliveries(system: System, batch_id: str) -> dict[str, Any]:
    answer = await system.client.get(f"/batches/{batch_id}/deliveries")
    assert answer.status_code == 200, answer.text
    doc: dict[str, Any] = answer.json()
    return doc


async def settled(system: System, batch_id: str, n: int) -> list[dict[str, Any]]:
    """The log once it has ``n`` deliveries, none pending."""

    async def check() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = (await deliveries(system, batch_id))["items"]
        done = len(items) == n and all(d["status"] != "pending" for d in items)
        return items if done else None

    found: list[dict[str, Any]] = await until(check, timeout=30)
    return found


@pytest.mark.system_settings(**QUICK)
async def test_events_arrive_signed_once_each_with_the_report(
    system: System, receiver: Receiver
) -> None:
    system.start_scheduler()
    system.start_worker("w1")
    jobs = [
        {"key": "ok", "type": "noop"},
        {
            "key": "bad",
            "type": "flaky",
            "payload": {"fail_times": -1},
            "retry": {"max_attempts": 1},
        },
    ]
    batch_id = await submit(system, jobs, [{"url": receiver.url("/in"), "events": ALL}])
    log = await settled(system, batch_id, 3)
    assert {d["status"] for d in log} == {"delivered"}
    assert [d["event"] for d in log] == ["batch.started", "job.failed", "batch.finished"]
    got = receiver.events("/in")
    assert sorted(r.doc["event"] for r in got) == sorted(ALL)
    for r in got:
        assert callbacks.verify(SECRET, r.headers[callbacks.SIGNATURE_HEADER], r.body) > 0
        assert r.headers[callbacks.DELIVERY_HEADER] == r.doc["delivery_id"]
        assert r.headers[callbacks.EVENT_HEADER] == r.doc["event"]
        assert r.doc["batch"]["batch_id"] == batch_id
        with pytest.raises(callbacks.InvalidSignature):
            callbacks.verify("another-secret", r.headers[callbacks.SIGNATURE_HEADER], r.body)
    assert {r.doc["delivery_id"] for r in got} == {d["id"] for d in log}
    by_event = {r.doc["event"]: r.doc for r in got}
    failed = by_event["job.failed"]["job"]
    assert failed["key"] == "bad" and "fails" in failed["error"]
    report = by_event["batch.finished"]
    assert report["batch"]["done"] is True
    assert report["batch"]["totals"]["completed"] == 1
    assert report["batch"]["totals"]["failed"] == 1
    assert report["batch"]["duration_seconds"] is not None
    assert [j["key"] for j in report["passed"]] == ["ok"]
    assert [(j["key"], j["error"] is not None) for j in report["failed"]] == [("bad", True)]
    await asyncio.sleep(0.5)  # nothing more comes: each event once
    assert len(receiver.events("/in")) == 3
    shown = await deliveries(system, batch_id)
    assert shown["callbacks"][0]["done"] is True


@pytest.mark.system_settings(**QUICK)
async def test_a_receiver_answering_500_twice_gets_the_third_attempt(
    system: System, receiver: Receiver
) -> None:
    system.start_scheduler()
    system.start_worker("w1")
    receiver.fail["/flaky"] = 2
    hook = {"url": receiver.url("/flaky"), "events": ["batch.finished"]}
    batch_id = await submit(system, [{"type": "noop"}], [hook])
    [delivery] = await settled(system, batch_id, 1)
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 3
    assert [h["status_code"] for h in delivery["history"]] == [500, 500, 200]
    assert delivery["last_status_code"] == 200 and delivery["delivered_at"] is not None
    assert delivery["history"][0]["error"] == "answered 500"
    got = receiver.events("/flaky")
    assert len(got) == 3
    assert {r.headers[callbacks.DELIVERY_HEADER] for r in got} == {delivery["id"]}
    stamps = [callbacks.verify(SECRET, r.headers[callbacks.SIGNATURE_HEADER], r.body) for r in got]
    assert stamps == sorted(stamps)  # each attempt signed when sent
    assert len({r.body for r in got}) == 1  # the same bytes every time


def _loopback_name() -> str:
    name = socket.gethostname()
    try:
        addresses = {i[4][0] for i in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    except OSError:
        addresses = set()
    if not addresses or not all(a.startswith("127.") or a == "::1" for a in addresses):
        # The machine's own name is the one name sure to resolve to loopback here (CI=true:
        # a missing one fails the test rather than skipping it).
        unavailable(f"a name for loopback ({name!r} resolves to {sorted(addresses)})", name)
    return name


@pytest.mark.system_settings(**{**QUICK, "callback_allowed_hosts": ["10.11.12.13"]})
async def test_a_name_resolving_to_loopback_is_refused_at_delivery(
    system: System, receiver: Receiver
) -> None:
    name = _loopback_name()
    system.start_scheduler()
    system.start_worker("w1")
    url = f"http://{name}:{receiver.port}/sneaky"
    batch_id = await submit(system, [{"type": "noop"}], [{"url": url, "events": ["batch.started"]}])
    [delivery] = await settled(system, batch_id, 1)
    assert delivery["status"] == "refused"
    assert "resolves to 127." in delivery["last_error"] and "loopback" in delivery["last_error"]
    assert delivery["next_attempt_at"] is None
    await asyncio.sleep(0.8)  # several polls and retry periods: no retry storm
    [again] = (await deliveries(system, batch_id))["items"]
    assert again["attempts"] == 1
    assert receiver.events() == []
