"""API keys in the database: create, list, revoke, and verify a presented key.

Used by the API and by ``smartq keys`` alike, so a fresh deployment can make its first admin key
without an API running. Each function runs its own transaction on the connection it is given
(which must not be in one): the API passes the request's connection, so verifying a key never
needs a second one (the embedded SQLite pool has exactly one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict
from sqlalchemy import RowMapping, Table, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from models.tables import ApiKey
from models.types import utcnow
from smartq import keys
from smartq.errors import ConfigurationError, UnknownKey
from smartq.keys import Caller, Scope

log = logging.getLogger(__name__)
api_keys: Table = ApiKey.__table__  # type: ignore[attr-defined]

#: ``last_used_at`` is written at most this often per key.
TOUCH_EVERY = timedelta(minutes=1)
#: Verified rows kept per process; beyond it the oldest are dropped.
MAX_CACHED = 10_000
_ID_ATTEMPTS = 3
#: A scope this version does not know (written by a newer one) grants nothing here.
_SCOPE_NAMES = frozenset(s.value for s in Scope)


class KeyInfo(BaseModel):
    """A key as listed: everything but its secret (which is never stored) and its hash."""

    model_config = ConfigDict(frozen=True)

    id: str
    tenant: str
    scopes: list[Scope]
    admin: bool
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewKey(KeyInfo):
    """A key just created, with the full key: shown this once, it cannot be read back."""

    key: str


def _info(row: RowMapping) -> KeyInfo:
    return KeyInfo.model_validate({c: row[c] for c in KeyInfo.model_fields})


async def create_key(
    conn: AsyncConnection,
    *,
    tenant: str,
    scopes: Collection[Scope],
    admin: bool = False,
    label: str | None = None,
    expires_in: timedelta | None = None,
    now: datetime | None = None,
) -> NewKey:
    """A new key for ``tenant``; arguments that cannot make a usable key raise
    :class:`ConfigurationError`."""
    if not scopes and not admin:
        raise ConfigurationError("a key needs at least one scope, or to be an admin key")
    now = now or utcnow()
    values = {
        "tenant": keys.check_tenant(tenant),
        "scopes": sorted(Scope(s).value for s in set(scopes)),
        "admin": admin,
        "label": keys.check_label(label),
        "created_at": now,
        "expires_at": now + expires_in if expires_in is not None else None,
        "last_used_at": None,
        "revoked_at": None,
    }
    key_id, full = await _insert(conn, values)
    log.info(
        "API key created",
        extra={"action": "keys.create", "key_id": key_id, "tenant": tenant, "admin": admin},
    )
    return NewKey.model_validate({**values, "id": key_id, "key": full})


async def _insert(conn: AsyncConnection, values: dict[str, object]) -> tuple[str, str]:
    """Insert a key's row under a new id; returns the id and the full key."""
    for attempt in range(1, _ID_ATTEMPTS + 1):
        key_id, secret, full = keys.generate()
        row = {**values, "id": key_id, "secret_hash": keys.hash_secret(secret)}
        try:
            async with conn.begin():
                await conn.execute(insert(api_keys).values(row))
        except IntegrityError:  # 48 random bits: an id taken already is all but impossible
            if attempt == _ID_ATTEMPTS:
                raise
            continue
        return key_id, full
    raise AssertionError("unreachable")


async def list_keys(conn: AsyncConnection) -> list[KeyInfo]:
    """Every key, oldest first."""
    async with conn.begin():
        rows = await conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id))
        return [_info(r) for r in rows.mappings()]


async def revoke_key(conn: AsyncConnection, key_id: str, now: datetime | None = None) -> KeyInfo:
    """Revoke a key. Revoking it again changes nothing (it keeps its first ``revoked_at``); an
    unknown id raises :class:`UnknownKey`."""
    async with conn.begin():
        await conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now or utcnow())
        )
        row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).mappings()
        found = row.one_or_none()
    if found is None:
        raise UnknownKey(key_id)
    log.info("API key revoked", extra={"action": "keys.revoke", "key_id": key_id})
    return _info(found)


async def dead_keys(
    conn: AsyncConnection, key_ids: Collection[str], now: datetime | None = None
) -> set[str]:
    """Which of ``key_ids`` no longer work: revoked, expired or gone. One query however many
    (the API asks it about the keys of its open streams, every second)."""
    now = now or utcnow()
    wanted = sorted(key_ids)
    live: set[str] = set()
    async with conn.begin():
        for start in range(0, len(wanted), 1000):
            rows = await conn.execute(
                select(api_keys.c.id).where(
                    api_keys.c.id.in_(wanted[start : start + 1000]),
                    api_keys.c.revoked_at.is_(None),
                    or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > now),
                )
            )
            live.update(r[0] for r in rows)
    return set(wanted) - live


@dataclass(frozen=True, slots=True)
class _Entry:
    """A key's row as last read, and when it was read."""

    key_id: str
    caller: Caller
    secret_hash: str
    expires_at: datetime | None
    revoked: bool
    last_used_at: datetime | None
    read_at: datetime

    def accepts(self, secret: str, now: datetime) -> bool:
        matches = keys.secret_matches(secret, self.secret_hash)  # first, whatever the row says
        live = not self.revoked and (self.expires_at is None or now < self.expires_at)
        return matches and live

    def touch_due(self, now: datetime) -> bool:
        return self.last_used_at is None or now - self.last_used_at >= TOUCH_EVERY


class KeyVerifier:
    """Turns a presented key into a :class:`Caller`, keeping each key's row for at most
    ``cache_seconds`` so that most requests do not read it: a key revoked elsewhere stops
    working within that time (at once in this process when revoked through :meth:`forget`)."""

    def __init__(self, cache_seconds: float, clock: Callable[[], datetime] = utcnow) -> None:
        self.cache_for = timedelta(seconds=cache_seconds)
        self.clock = clock
        self._rows: dict[str, _Entry] = {}

    async def verify(self, conn: AsyncConnection, presented: str) -> Caller | None:
        """The caller for a valid key; None for unknown, revoked, expired and malformed keys
        alike (the API answers them all the same)."""
        parsed = keys.parse(presented)
        if parsed is None:
            return None
        now = self.clock()
        entry = await self._entry(conn, parsed.key_id, now)
        if entry is None or not entry.accepts(parsed.secret, now):
            return None
        if entry.touch_due(now):
            await self._touch(conn, entry, now)
        return entry.caller

    def cached(self, presented: str) -> Caller | None:
        """The caller of a valid key this process read within the cache window and whose use
        needs no recording now; None when :meth:`verify` must decide (not cached, stale,
        invalid, or its ``last_used_at`` is due). Needs no connection: for hot routes."""
        parsed = keys.parse(presented)
        if parsed is None:
            return None
        entry = self._rows.get(parsed.key_id)
        now = self.clock()
        if entry is None or now - entry.read_at >= self.cache_for or entry.touch_due(now):
            return None
        return entry.caller if entry.accepts(parsed.secret, now) else None

    def forget(self, key_id: str) -> None:
        """Drop a key's row, so its next use reads it again (after a revocation here)."""
        self._rows.pop(key_id, None)

    async def _entry(self, conn: AsyncConnection, key_id: str, now: datetime) -> _Entry | None:
        cached = self._rows.get(key_id)
        if cached is not None and now - cached.read_at < self.cache_for:
            return cached
        async with conn.begin():
            result = await conn.execute(select(api_keys).where(api_keys.c.id == key_id))
            row = result.mappings().one_or_none()
        if row is None:  # unknown ids are not kept: guesses cannot fill the cache
            self.forget(key_id)
            return None
        entry = _entry_of(row, now)
        self._keep(entry)
        return entry

    def _keep(self, entry: _Entry) -> None:
        if self.cache_for <= timedelta(0):
            return
        self._rows.pop(entry.key_id, None)
        while len(self._rows) >= MAX_CACHED:
            del self._rows[next(iter(self._rows))]
        self._rows[entry.key_id] = entry

    async def _touch(self, conn: AsyncConnection, entry: _Entry, now: datetime) -> None:
        """Record the use; the condition keeps it to about once a minute across processes."""
        table = api_keys.c
        async with conn.begin():
            await conn.execute(
                update(api_keys)
                .where(
                    table.id == entry.key_id,
                    or_(table.last_used_at.is_(None), table.last_used_at <= now - TOUCH_EVERY),
                )
                .values(last_used_at=now)
            )
        if entry.key_id in self._rows:
            self._rows[entry.key_id] = replace(entry, last_used_at=now)


def _entry_of(row: RowMapping, now: datetime) -> _Entry:
    caller = Caller(
        key_id=row["id"],
        tenant=row["tenant"],
        scopes=frozenset(Scope(s) for s in row["scopes"] if s in _SCOPE_NAMES),
        admin=row["admin"],
    )
    return _Entry(
        key_id=row["id"],
        caller=caller,
        secret_hash=row["secret_hash"],
        expires_at=row["expires_at"],
        revoked=row["revoked_at"] is not None,
        last_used_at=row["last_used_at"],
        read_at=now,
    )
