"""The Alembic migrations build exactly the schema the models describe, on both databases
(the equivalent of ``alembic check``), and downgrade cleanly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from models.tables import metadata
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
