"""API keys, the pure part: their format, hashing, scopes, expiry durations and the caller a
verified key stands for. The database side is :mod:`smartq.keystore`.

A key reads ``sq_<id>_<secret>``: the ``sq_`` prefix lets people and secret scanners recognise
it, the id finds its row, and only a hash of the secret is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from smartq.errors import ConfigurationError

PREFIX = "sq_"
#: 32 random bytes: 256 bits of entropy, 43 url-safe characters.
SECRET_BYTES = 32
#: The id is hex, so it never holds the ``_`` that separates it from the secret.
ID_BYTES = 6
_KEY = re.compile(r"sq_([0-9a-f]{12})_([A-Za-z0-9_-]{43,128})")
_LOOKS_LIKE_KEY = re.compile(r"sq_[0-9a-f]{12}_")
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_DURATION = re.compile(r"([1-9][0-9]{0,6})([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
#: Longer expiries are refused: a key that must outlive this should simply not expire.
MAX_EXPIRY = timedelta(days=3650)
MAX_LABEL = 200


class Scope(StrEnum):
    """What a key may do. ``admin`` is not a scope but a flag on the key that implies them all
    (and the key administration itself)."""

    SUBMIT = "submit"
    READ = "read"
    CANCEL = "cancel"
    MONITOR = "monitor"


#: The tenant of rows made before keys existed, and of everything done with auth off.
DEFAULT_TENANT = "default"

#: What ``smartq keys create`` grants when no ``--scope`` is given: a client's everyday needs.
DEFAULT_SCOPES = frozenset({Scope.SUBMIT, Scope.READ, Scope.CANCEL})


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request comes from: the verified key's id, tenant and rights."""

    #: None for the caller of an API running with auth off (there is no key).
    key_id: str | None
    tenant: str
    scopes: frozenset[Scope]
    admin: bool

    def can(self, scope: Scope) -> bool:
        return self.admin or scope in self.scopes


#: Who every request is when the API runs with auth off: an admin of the default tenant.
OPEN_CALLER = Caller(key_id=None, tenant=DEFAULT_TENANT, scopes=frozenset(Scope), admin=True)


@dataclass(frozen=True, slots=True)
class ParsedKey:
    key_id: str
    secret: str


def generate() -> tuple[str, str, str]:
    """A new key: ``(key_id, secret, full_key)``. The full key is shown once, never stored."""
    key_id = secrets.token_hex(ID_BYTES)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return key_id, secret, f"{PREFIX}{key_id}_{secret}"


def parse(presented: str) -> ParsedKey | None:
    """The id and secret of a presented key; None for anything not shaped like one."""
    match = _KEY.fullmatch(presented)
    if match is None:
        return None
    return ParsedKey(key_id=match.group(1), secret=match.group(2))


def looks_like_key(text: str) -> bool:
    """Whether ``text`` starts like a smartq key (to refuse one found where it must not be)."""
    return _LOOKS_LIKE_KEY.match(text) is not None


def hash_secret(secret: str) -> str:
    """The stored form of a secret. A plain SHA-256 is enough here: the secret is 256 random
    bits, so there is no dictionary to try and a slow KDF (bcrypt, argon2) would only cost
    every request time without making a guess any less hopeless."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison, so response times do not leak how much of a hash matched."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def parse_scopes(text: str) -> frozenset[Scope]:
    """``submit,read`` as scopes; an unknown name is a :class:`ConfigurationError`."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = {s.value: s for s in Scope}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigurationError(
            f"unknown scope {', '.join(unknown)}; scopes are {', '.join(known)}"
        )
    return frozenset(known[n] for n in names)


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m`` (also ``s`` and ``w``) as a duration, for ``--expires``."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ConfigurationError(
            f"cannot read {text!r} as a duration: write a whole number and a unit, "
            "s, m, h, d or w (e.g. 90d, 12h, 30m)"
        )
    duration = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if duration > MAX_EXPIRY:
        raise ConfigurationError(f"{text} is longer than {MAX_EXPIRY.days}d; omit it instead")
    return duration


def check_tenant(name: str) -> str:
    """A tenant name: letters, digits, ``.``, ``_`` and ``-``, at most 100 characters."""
    if _TENANT.fullmatch(name) is None:
        raise ConfigurationError(
            f"invalid tenant {name!r}: 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_label(label: str | None) -> str | None:
    """A label is free text for people, without control characters (they break listings)."""
    if label is None:
        return None
    if len(label) > MAX_LABEL or any(not ch.isprintable() for ch in label):
        raise ConfigurationError(
            f"invalid label: at most {MAX_LABEL} printable characters, no control characters"
        )
    return label
