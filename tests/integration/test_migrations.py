"""The Alembic migrations build exactly the schema the models describe, on both databases
(the equivalent of ``alembic check``), and downgrade cleanly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from models.tables import metadata
from models.types import JsonType, UtcDateTime
from smartq import migrate
from smartq.db import create_sync


def test_migrations_match_the_models(database_url: str) -> None:
    engine = create_sync(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == [], diff
        tables = set(inspect(engine).get_table_names())
        assert {
            "jobs",
            "job_dependencies",
            "job_attempts",
            "job_logs",
            "batches",
            "workers",
        } <= tables
    finally:
        engine.dispose()


def test_migrations_downgrade_and_upgrade_again(database_url: str) -> None:
    from alembic import command

    command.downgrade(migrate.alembic_config(database_url), "base")
    engine = create_sync(database_url)
    try:
        assert "jobs" not in set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    migrate.upgrade(database_url)
    engine = create_sync(database_url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        engine.dispose()


def _insert_job(conn: Any, job_id: uuid.UUID, key: str, at: datetime, **extra: Any) -> None:
    """A job row written with only the columns every revision since 0005 has (plus ``extra``),
    as a lightweight table: the models describe the newest schema only."""
    names = ("tenant",) if "tenant" in extra else ()
    table = sa.table(
        "jobs",
        sa.column("id", sa.Uuid()),
        sa.column("payload", JsonType),
        sa.column("created_at", UtcDateTime()),
        sa.column("updated_at", UtcDateTime()),
        *(sa.column(n) for n in ("name", "type", "priority", "cpu_units", "memory_mb")),
        *(sa.column(n) for n in ("max_attempts", "initial_delay_seconds", "backoff_multiplier")),
        *(sa.column(n) for n in ("idempotency_key", "status", "attempts", "attempts_base")),
        *(sa.column(n) for n in names),
    )
    values = {
        "id": job_id,
        "payload": {},
        "created_at": at,
        "updated_at": at,
        "name": "j",
        "type": "noop",
        "priority": 5,
        "cpu_units": 1,
        "memory_mb": 64,
        "max_attempts": 1,
        "initial_delay_seconds": 1.0,
        "backoff_multiplier": 2.0,
        "idempotency_key": key,
        "status": "pending",
        "attempts": 0,
        "attempts_base": 0,
        **extra,
    }
    conn.execute(table.insert().values(values))


def test_rows_from_before_tenants_belong_to_default_and_keys_become_per_tenant(
    database_url: str,
) -> None:
    from alembic import command

    config = migrate.alembic_config(database_url)
    command.downgrade(config, "0005")
    engine = create_sync(database_url)
    old = uuid.uuid4()
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            _insert_job(conn, old, "nightly", now)
        migrate.upgrade(database_url)
        with engine.begin() as conn:
            row = conn.execute(text("SELECT tenant FROM jobs")).one()
            assert row.tenant == "default"
            # the same idempotency key is now free in another tenant, not in the same one
            _insert_job(conn, uuid.uuid4(), "nightly", now + timedelta(seconds=1), tenant="acme")
        with pytest.raises(IntegrityError), engine.begin() as conn:
            _insert_job(conn, uuid.uuid4(), "nightly", now, tenant="default")
        # back to one namespace: the later use of the shared key gives it up, nothing is lost
        command.downgrade(config, "0005")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, idempotency_key FROM jobs")).all()
        keys = {
            uuid.UUID(str(r.id)) if not isinstance(r.id, uuid.UUID) else r.id: r[1] for r in rows
        }
        assert len(keys) == 2 and keys[old] == "nightly"
        assert sorted(k or "" for k in keys.values()) == ["", "nightly"]
    finally:
        engine.dispose()
        migrate.upgrade(database_url)


def test_deleting_a_batch_takes_its_callbacks_and_their_deliveries(database_url: str) -> None:
    """Retention deletes old batches: the callbacks' rows must go with them (ON DELETE
    CASCADE), on both databases; and each event is stored once per callback."""
    from models.callback_tables import BatchCallback, CallbackDelivery
    from models.inserts import batches

    callbacks: sa.Table = BatchCallback.__table__  # type: ignore[attr-defined]
    deliveries: sa.Table = CallbackDelivery.__table__  # type: ignore[attr-defined]
    engine = create_sync(database_url)
    batch, callback = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    row = {
        "callback_id": callback,
        "batch_id": batch,
        "event": "batch.finished",
        "event_key": "batch.finished",
        "body": "{}",
        "status": "pending",
        "attempts": 0,
        "history": [],
        "created_at": now,
        "updated_at": now,
    }
    try:
        with engine.begin() as conn:
            conn.execute(batches.insert().values(id=batch, tenant="t", job_count=0, created_at=now))
            conn.execute(
                callbacks.insert().values(
                    id=callback,
                    batch_id=batch,
                    tenant="t",
                    url="https://example.com/",
                    events=["batch.finished"],
                    created_at=now,
                )
            )
            conn.execute(deliveries.insert().values(id=uuid.uuid4(), **row))
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(deliveries.insert().values(id=uuid.uuid4(), **row))
        with engine.begin() as conn:
            conn.execute(batches.delete().where(batches.c.id == batch))
            left = [
                conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                for t in (callbacks, deliveries)
            ]
        assert left == [0, 0]
    finally:
        engine.dispose()
