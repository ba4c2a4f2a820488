"""ix_jobs_batch on (batch_id, created_at, id): GET /batches/{id} reads a batch's jobs a page at
a time, in submission order, and each page is then one range of the index

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 20:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHERE: dict[str, Any] = {
    "postgresql_where": sa.text("batch_id IS NOT NULL"),
    "sqlite_where": sa.text("batch_id IS NOT NULL"),
}


def upgrade() -> None:
    op.drop_index("ix_jobs_batch", table_name="jobs", **_WHERE)
    op.create_index("ix_jobs_batch", "jobs", ["batch_id", "created_at", "id"], **_WHERE)


def downgrade() -> None:
    op.drop_index("ix_jobs_batch", table_name="jobs", **_WHERE)
    op.create_index("ix_jobs_batch", "jobs", ["batch_id"], **_WHERE)
