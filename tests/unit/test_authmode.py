"""When the API checks keys: every combination of SMARTQ_AUTH, command and address."""

from __future__ import annotations

import pytest

from smartq.authmode import decide, is_loopback
from smartq.errors import ConfigurationError


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("smartq.example.com", False),
    ],
)
def test_loopback_is_this_machine_only(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("dev", [True, False])
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_keys_are_required_when_asked_for_everywhere(dev: bool, host: str) -> None:
    assert decide("on", host, dev=dev, insecure=False).required


def test_smartq_api_requires_keys_unless_told_otherwise() -> None:
    assert decide(None, "127.0.0.1", dev=False, insecure=False).required
    assert decide(None, "0.0.0.0", dev=False, insecure=True).required


def test_smartq_dev_is_open_on_loopback_only_and_says_so() -> None:
    mode = decide(None, "127.0.0.1", dev=True, insecure=False)
    assert not mode.required and "OFF" in mode.notice and "this machine only" in mode.notice
    assert decide(None, "0.0.0.0", dev=True, insecure=False).required


@pytest.mark.parametrize("dev", [True, False])
def test_auth_off_on_a_reachable_address_needs_insecure(dev: bool) -> None:
    with pytest.raises(ConfigurationError, match="--insecure"):
        decide("off", "0.0.0.0", dev=dev, insecure=False)
    mode = decide("off", "0.0.0.0", dev=dev, insecure=True)
    assert not mode.required and "ANYONE" in mode.notice
    assert not decide("off", "127.0.0.1", dev=dev, insecure=False).required
