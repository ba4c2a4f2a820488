"""Helpers for tests that present API keys."""

from __future__ import annotations

from smartq import keys


def bearer(key: str) -> dict[str, str]:
    """The request header that presents ``key``."""
    return {"Authorization": f"Bearer {key}"}


def secret_of(key: str) -> str:
    """The secret part of a full key (it may itself hold ``_``)."""
    parsed = keys.parse(key)
    assert parsed is not None
    return parsed.secret
