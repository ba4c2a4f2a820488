"""API keys, the pure part, as tables: format, parsing, hashing, scopes, durations, callers."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from smartq import keys
from smartq.errors import ConfigurationError
from smartq.keys import Caller, Scope


def test_generated_keys_are_recognisable_parse_back_and_differ() -> None:
    made = [keys.generate() for _ in range(50)]
    for key_id, secret, full in made:
        assert full == f"sq_{key_id}_{secret}"
        assert re.fullmatch(r"[0-9a-f]{12}", key_id)
        assert len(secret) >= 43  # 32 random bytes, url-safe base64
        assert keys.parse(full) == keys.ParsedKey(key_id=key_id, secret=secret)
        assert keys.looks_like_key(full)
    assert len({full for _, _, full in made}) == len({key_id for key_id, _, _ in made}) == 50


GOOD_SECRET = "A" * 43


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "sq_",
        "sq__" + GOOD_SECRET,
        f"SQ_0123456789ab_{GOOD_SECRET}",  # the prefix is lower case
        f"xx_0123456789ab_{GOOD_SECRET}",
        f"sq_0123456789AB_{GOOD_SECRET}",  # ids are lower-case hex
        f"sq_0123456789a_{GOOD_SECRET}",  # one short
        f"sq_0123456789abc_{GOOD_SECRET}",
        "sq_0123456789ab_" + "A" * 42,  # secret too short to be ours
        "sq_0123456789ab_" + "A" * 129,
        f"sq_0123456789ab_{GOOD_SECRET} ",
        f" sq_0123456789ab_{GOOD_SECRET}",
        f"sq_0123456789ab_{GOOD_SECRET[:-1]}=",
        f"sq_0123456789ab_{GOOD_SECRET[:-1]}\x00",
        f"Bearer sq_0123456789ab_{GOOD_SECRET}",
        "sq_0123456789ab_" + "é" * 43,
    ],
)
def test_anything_not_shaped_like_a_key_parses_to_none(presented: str) -> None:
    assert keys.parse(presented) is None


def test_a_secret_may_hold_underscores_and_dashes() -> None:
    secret = "_-" * 22
    assert keys.parse(f"sq_0123456789ab_{secret}") == keys.ParsedKey("0123456789ab", secret)


def test_hash_is_sha256_hex_and_verification_needs_the_exact_secret() -> None:
    _, secret, _ = keys.generate()
    stored = keys.hash_secret(secret)
    assert re.fullmatch(r"[0-9a-f]{64}", stored)
    assert keys.hash_secret(secret) == stored
    assert keys.secret_matches(secret, stored)
    assert not keys.secret_matches(secret[:-1], stored)
    assert not keys.secret_matches(secret + "x", stored)
    assert not keys.secret_matches(secret, stored.upper())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("submit", {Scope.SUBMIT}),
        ("submit,read,cancel", {Scope.SUBMIT, Scope.READ, Scope.CANCEL}),
        (" read , monitor ", {Scope.READ, Scope.MONITOR}),
        ("read,read", {Scope.READ}),
        ("", set()),
        (",", set()),
    ],
)
def test_parse_scopes(text: str, expected: set[Scope]) -> None:
    assert keys.parse_scopes(text) == expected


@pytest.mark.parametrize("text", ["admin", "Read", "read,write", "submit;read"])
def test_unknown_scopes_are_refused_by_name(text: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown scope"):
        keys.parse_scopes(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        (" 1d ", timedelta(days=1)),
        ("3650d", timedelta(days=3650)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert keys.parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "d", "90", "0d", "-1d", "1.5h", "90 d", "90D", "1y", "3651d", "99999999999d"]
)
def test_bad_durations_are_a_clear_configuration_error(text: str) -> None:
    with pytest.raises(ConfigurationError, match=r"duration|longer than"):
        keys.parse_duration(text)


@pytest.mark.parametrize("name", ["acme", "team-a", "a", "Org_1.prod", "x" * 100])
def test_good_tenants(name: str) -> None:
    assert keys.check_tenant(name) == name


@pytest.mark.parametrize("name", ["", "a b", "-acme", ".hidden", "x" * 101, "acmé", "a/b"])
def test_bad_tenants(name: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid tenant"):
        keys.check_tenant(name)


@pytest.mark.parametrize(
    ("label", "ok"),
    [
        (None, True),
        ("ci bot", True),
        ("équipe data", True),
        ("x" * 200, True),
        ("x" * 201, False),
        ("tab\there", False),
        ("new\nline", False),
        ("nul\x00", False),
    ],
)
def test_labels(label: str | None, ok: bool) -> None:
    if ok:
        assert keys.check_label(label) == label
    else:
        with pytest.raises(ConfigurationError, match="invalid label"):
            keys.check_label(label)


@pytest.mark.parametrize(
    ("scopes", "admin", "allowed"),
    [
        ({Scope.READ}, False, {Scope.READ}),
        ({Scope.SUBMIT, Scope.READ}, False, {Scope.SUBMIT, Scope.READ}),
        (set(), False, set()),
        (set(), True, set(Scope)),
        ({Scope.READ}, True, set(Scope)),
    ],
)
def test_caller_can_what_its_scopes_say_and_admin_can_everything(
    scopes: set[Scope], admin: bool, allowed: set[Scope]
) -> None:
    caller = Caller(key_id="0123456789ab", tenant="acme", scopes=frozenset(scopes), admin=admin)
    assert {s for s in Scope if caller.can(s)} == allowed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sq_0123456789ab_", True),
        ("sq_0123456789ab_anything", True),
        ("sq_0123456789a", False),
        ("acme", False),
        ("sq_", False),
    ],
)
def test_looks_like_key(text: str, expected: bool) -> None:
    assert keys.looks_like_key(text) is expected
