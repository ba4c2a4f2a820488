"""Tenants: every job and batch belongs to the tenant of the key that submitted it. Rows made
before keys existed belong to the tenant ``default``. Idempotency keys become unique per
tenant, so two tenants using the same key make two jobs and a replay never crosses tenants

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:30:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEYED: dict[str, Any] = {
    "postgresql_where": sa.text("idempotency_key IS NOT NULL"),
    "sqlite_where": sa.text("idempotency_key IS NOT NULL"),
}


def _tenant() -> sa.Column[str]:
    # The server default fills the rows already there (and keeps an old API writing).
    return sa.Column(
        "tenant", sa.String(length=100), nullable=False, server_default=sa.text("'default'")
    )


def upgrade() -> None:
    for table in ("jobs", "batches"):
        op.add_column(table, _tenant())
        op.drop_index(f"ux_{table}_idempotency_key", table_name=table, **_KEYED)
        op.create_index(
            f"ux_{table}_idempotency_key",
            table,
            ["tenant", "idempotency_key"],
            unique=True,
            **_KEYED,
        )
    # A tenant's listing, newest first, and its batch pages, each one range of an index.
    op.create_index("ix_jobs_tenant_created", "jobs", ["tenant", "created_at", "id"])
    op.create_index("ix_jobs_tenant_status_created", "jobs", ["tenant", "status", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_status_created", table_name="jobs")
    op.drop_index("ix_jobs_tenant_created", table_name="jobs")
    for table in ("jobs", "batches"):
        op.drop_index(f"ux_{table}_idempotency_key", table_name=table, **_KEYED)
        # Back to one namespace: keys two tenants share would collide, so the later ones go.
        op.execute(
            f"UPDATE {table} SET idempotency_key = NULL WHERE idempotency_key IS NOT NULL AND "
            f"EXISTS (SELECT 1 FROM {table} AS o WHERE o.idempotency_key = "
            f"{table}.idempotency_key AND o.created_at < {table}.created_at)"
        )
        op.create_index(
            f"ux_{table}_idempotency_key", table, ["idempotency_key"], unique=True, **_KEYED
        )
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tenant")
