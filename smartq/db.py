"""Database engines for PostgreSQL (psycopg 3) and the embedded SQLite file.

Users write plain URLs (``postgresql://user@host:5432/db``, ``sqlite:///path``); smartq picks the
driver. Async engines serve the processes; sync engines serve Alembic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from smartq.errors import ConfigurationError


def dialect_of(url: str) -> str:
    """``postgresql`` or ``sqlite``; anything else is a configuration error."""
    try:
        backend = make_url(url).get_backend_name()
    except Exception as exc:
        raise ConfigurationError(f"cannot parse database URL {url!r}: {exc}") from exc
    if backend in {"postgresql", "postgres"}:
        return "postgresql"
    if backend == "sqlite":
        return "sqlite"
    raise ConfigurationError(f"unsupported database {backend!r}: use postgresql:// or sqlite://")


def driver_url(url: str, *, use_async: bool) -> str:
    """The URL with the driver smartq uses: psycopg 3 for PostgreSQL, aiosqlite/pysqlite."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if dialect_of(url) == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    driver = "sqlite+aiosqlite" if use_async else "sqlite"
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def _sqlite_file(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_async(
    url: str, *, pool_size: int = 10, pre_ping: bool = True, pool_timeout: float | None = None
) -> AsyncEngine:
    """The async engine every smartq process uses.

    SQLite gets a single pooled connection: the embedded mode is one process, and one writer
    connection serialises transactions instead of failing them with "database is locked".
    ``pre_ping`` tests each pooled connection with a round trip before handing it out; the API
    turns it off (a request on a connection the server dropped gets a 503 to retry, and
    SQLAlchemy then replaces the whole pool), as it was a second transaction per request.
    ``pool_timeout``: how long a caller waits for a free connection before SQLAlchemy raises
    its ``TimeoutError`` (default 60 s on SQLite, where waiting is how writes serialise, 30 s
    on PostgreSQL); the API sets a short one so that an overload is answered, not queued.
    """
    if dialect_of(url) == "sqlite":
        _sqlite_file(url)
        engine = create_async_engine(
            driver_url(url, use_async=True),
            poolclass=AsyncAdaptedQueuePool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=60 if pool_timeout is None else pool_timeout,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        driver_url(url, use_async=True),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        pool_timeout=30 if pool_timeout is None else pool_timeout,
    )


def create_sync(url: str) -> Engine:
    """A sync engine, for migrations and tools."""
    if dialect_of(url) == "sqlite":
        _sqlite_file(url)
        engine = create_engine(driver_url(url, use_async=False))
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(driver_url(url, use_async=False), pool_pre_ping=True)


#: PostgreSQL errors after which the whole transaction may simply be run again.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` (SQLAlchemy's or psycopg's own) is a deadlock or serialization failure
    (retry the transaction)."""
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "sqlstate", None) in RETRYABLE_SQLSTATES


def psycopg_dsn(url: Any) -> str:
    """A URL (or an engine's ``URL``) as psycopg's own connection string."""
    parsed = make_url(str(url) if not hasattr(url, "set") else url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)
