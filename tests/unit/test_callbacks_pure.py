"""The pure parts of batch callbacks: the signature a receiver verifies (smartq.callbacks),
the SSRF guard (smartq.urlguard), which events a batch's state makes due and what an attempt's
outcome means (scheduler.delivery). Tables for the rules, hypothesis for the invariants."""

from __future__ import annotations

import ipaddress
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.delivery import (
    BatchProgress,
    DeliveryStatus,
    Outcome,
    RetryPolicy,
    decide,
    due_events,
)
from smartq import callbacks, urlguard
from smartq.callbacks import Event
from smartq.errors import CallbackRefused, ConfigurationError, InvalidSignature

NOW = 1_800_000_000


# -- the signature --------------------------------------------------------------------------
def test_a_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    header = callbacks.sign("s3cret", b'{"a":1}', NOW)
    want = hmac.new(b"s3cret", f"{NOW}.".encode() + b'{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={want}"
    assert callbacks.verify("s3cret", header, b'{"a":1}', now=NOW + 10) == NOW


@given(secret=st.text(min_size=1), body=st.binary(), skew=st.integers(-300, 300))
def test_what_is_signed_verifies_within_the_tolerance(secret: str, body: bytes, skew: int) -> None:
    header = callbacks.sign(secret, body, NOW)
    assert callbacks.verify(secret, header, body, now=NOW + skew) == NOW


@given(body=st.binary(), other=st.binary())
def test_another_body_or_secret_does_not_verify(body: bytes, other: bytes) -> None:
    header = callbacks.sign("right", body, NOW)
    with pytest.raises(InvalidSignature):
        callbacks.verify("wrong", header, body, now=NOW)
    if other != body:
        with pytest.raises(InvalidSignature):
            callbacks.verify("right", header, other, now=NOW)


@pytest.mark.parametrize(
    "header",
    ["", "t=1", "v1=abc", "t=abc,v1=00", "t=-5,v1=00", "nonsense", f"t={NOW},v1="],
)
def test_malformed_headers_are_refused(header: str) -> None:
    with pytest.raises(InvalidSignature, match="malformed"):
        callbacks.verify("s", header, b"{}", now=NOW)


def test_an_old_signature_is_refused_and_a_rotated_one_is_accepted() -> None:
    header = callbacks.sign("s", b"{}", NOW)
    with pytest.raises(InvalidSignature, match="tolerance"):
        callbacks.verify("s", header, b"{}", now=NOW + 301)
    assert callbacks.verify("s", header, b"{}", tolerance=400, now=NOW + 301) == NOW
    old = callbacks.sign("old", b"{}", NOW).split(",")[1]
    assert callbacks.verify("s", f"{header},{old}", b"{}", now=NOW) == NOW


# -- the guard ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/x", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("example.com/hook", "only http and https"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://127.0.0.1:8000/", "loopback"),
        ("http://127.8.9.1/", "loopback"),
        ("http://10.0.0.1/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://172.16.0.1/", "private"),
        ("http://100.64.0.1/", "not globally routable"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[::1]/", "loopback"),
        ("http://[::]/", "unspecified"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fe80::1%25eth0]/", "link-local"),
        ("http://[fc00::1]/", "private"),
        ("http://[ff02::1]/", "multicast"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://localhost:9000/", "loopback"),
        # shorthand IPv4 the resolver reads as addresses: 127.0.0.1 and 169.254.169.254
        ("http://2130706433/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://0x7f.0.0.1/", "loopback"),
        ("http://0xa9fea9fe/", "link-local"),
        ("http://LOCALHOST./", "loopback"),
        ("http://api.localhost/", "loopback"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://example.com:99999/", "not a URL"),
        ("http:///path", "no host"),
    ],
)
def test_urls_refused_as_written(url: str, why: str) -> None:
    with pytest.raises(CallbackRefused, match=why):
        urlguard.check_url(url)


def test_a_public_url_passes_with_its_parts() -> None:
    target = urlguard.check_url("https://hooks.example.com/in?x=1")
    assert (target.scheme, target.host, target.port, target.target) == (
        "https",
        "hooks.example.com",
        443,
        "/in?x=1",
    )
    assert target.address is None
    assert urlguard.check_url("http://93.184.216.34:8080").target == "/"


def test_the_allowance_lets_hosts_and_networks_through() -> None:
    allow = urlguard.parse_allowance(["127.0.0.1", " 10.0.0.0/8", "Receiver.Internal", ""])
    assert urlguard.check_url("http://127.0.0.1:5000/", allow).port == 5000
    assert urlguard.check_url("http://[::ffff:127.0.0.1]/", allow).host == "::ffff:127.0.0.1"
    assert urlguard.check_url("http://10.9.9.9/", allow).host == "10.9.9.9"
    with pytest.raises(CallbackRefused):
        urlguard.check_url("http://127.0.0.2/", allow)
    assert urlguard.pick_address("receiver.internal", ["192.168.0.5"], allow) == "192.168.0.5"
    with pytest.raises(ConfigurationError):
        urlguard.parse_allowance(["not a host/"])


@pytest.mark.parametrize(
    ("resolved", "refused"),
    [
        (["93.184.216.34"], False),
        (["93.184.216.34", "2606:2800:220:1::1"], False),
        (["93.184.216.34", "127.0.0.1"], True),  # any blocked answer refuses the name
        (["::ffff:10.0.0.1"], True),
        (["fe80::1%eth0"], True),
        ([], True),
    ],
)
def test_resolved_addresses_are_judged_all_of_them(resolved: list[str], refused: bool) -> None:
    if refused:
        with pytest.raises(CallbackRefused):
            urlguard.pick_address("hooks.example.com", resolved)
    else:
        assert urlguard.pick_address("hooks.example.com", resolved) == resolved[0]


@given(st.ip_addresses(v=4))
def test_a_mapped_address_is_judged_as_its_ipv4(address: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    assert urlguard.blocked_reason(mapped) == urlguard.blocked_reason(address)


# -- events ---------------------------------------------------------------------------------
A, B = uuid.uuid4(), uuid.uuid4()
ALL = set(callbacks.EVENT_NAMES)


@pytest.mark.parametrize(
    ("progress", "wanted", "keys"),
    [
        (BatchProgress(False, False), ALL, []),
        (BatchProgress(True, False), ALL, ["batch.started"]),
        (BatchProgress(True, False, [(A, 2)]), ALL, ["batch.started", f"job.failed:{A}:2"]),
        (
            BatchProgress(True, True, [(A, 2), (B, 1)]),
            ALL,
            ["batch.started", f"job.failed:{A}:2", f"job.failed:{B}:1", "batch.finished"],
        ),
        (BatchProgress(False, True), ALL, ["batch.finished"]),  # all cancelled before a start
        (BatchProgress(True, True, [(A, 1)]), {"batch.finished"}, ["batch.finished"]),
        (BatchProgress(True, True, [(A, 1)]), {"job.failed"}, [f"job.failed:{A}:1"]),
    ],
)
def test_events_due_from_a_batch_state(
    progress: BatchProgress, wanted: set[str], keys: list[str]
) -> None:
    assert [e.key for e in due_events(progress, wanted)] == keys


def test_a_job_failing_again_after_a_retry_is_another_event() -> None:
    first = due_events(BatchProgress(True, True, [(A, 1)]), {"job.failed"})
    again = due_events(BatchProgress(True, True, [(A, 3)]), {"job.failed"})
    assert first[0].key != again[0].key and first[0].job_id == again[0].job_id == A
    assert first[0].event is Event.JOB_FAILED


# -- retries --------------------------------------------------------------------------------
T0 = datetime(2026, 12, 3, tzinfo=UTC)


@given(attempts=st.integers(1, 200), seed=st.integers(0, 2**32))
def test_a_wait_is_in_the_upper_half_of_the_doubling_schedule(attempts: int, seed: int) -> None:
    policy = RetryPolicy(base=5, cap=3600)
    full = min(3600.0, 5.0 * 2 ** (attempts - 1))
    assert full / 2 <= policy.delay(attempts, random.Random(seed)) <= full


def test_outcomes_decide_delivered_retried_refused_or_given_up() -> None:
    rng = random.Random(1)
    policy = RetryPolicy(base=5, cap=3600, window=24 * 3600)
    assert decide(Outcome(204), 1, T0, T0, policy, rng).status is DeliveryStatus.DELIVERED
    refused = Outcome(None, "resolves to 127.0.0.1", refused=True)
    assert decide(refused, 1, T0, T0, policy, rng).status is DeliveryStatus.REFUSED
    retried = decide(Outcome(500), 1, T0, T0, policy, rng)
    assert retried.status is DeliveryStatus.PENDING
    assert retried.next_attempt_at is not None
    assert T0 + timedelta(seconds=2.5) <= retried.next_attempt_at <= T0 + timedelta(seconds=5)
    late = T0 + timedelta(hours=23, minutes=59)
    assert decide(Outcome(None, "timeout"), 30, T0, late, policy, rng).status is (
        DeliveryStatus.FAILED
    )
    for code in (301, 404, 410, 503):
        assert decide(Outcome(code), 1, T0, T0, policy, rng).status is DeliveryStatus.PENDING


@given(seed=st.integers(0, 2**32))
def test_a_delivery_never_answered_is_tried_for_the_window_then_given_up(seed: int) -> None:
    rng = random.Random(seed)
    policy = RetryPolicy(base=5, cap=3600, window=24 * 3600)
    now, attempts = T0, 1
    while True:
        d = decide(Outcome(500), attempts, T0, now, policy, rng)
        if d.status is DeliveryStatus.FAILED:
            break
        assert d.next_attempt_at is not None and d.next_attempt_at > now
        now, attempts = d.next_attempt_at, attempts + 1
    assert now <= T0 + timedelta(hours=24)
    assert now >= T0 + timedelta(hours=23)  # the last wait is an hour at most
    assert 20 <= attempts <= 50
