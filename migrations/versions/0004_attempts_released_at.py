"""job_attempts.released_at: when an attempt's cpu and memory became free again. A timed-out
plain-function thread keeps them after its attempt ended; with this column the capacity in use
is one sum, the same in GET /workers, in waiting reasons and in the scheduler after a restart

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 21:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import models.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHERE: dict[str, Any] = {
    "postgresql_where": sa.text("released_at IS NULL"),
    "sqlite_where": sa.text("released_at IS NULL"),
}


def upgrade() -> None:
    op.add_column("job_attempts", sa.Column("released_at", models.types.UtcDateTime(timezone=True)))
    # Attempts already closed are taken as released: whether a thread of theirs still runs is
    # not recorded anywhere before this column.
    op.execute("UPDATE job_attempts SET released_at = finished_at WHERE finished_at IS NOT NULL")
    op.create_index("ix_job_attempts_holding", "job_attempts", ["worker_id"], **_WHERE)


def downgrade() -> None:
    op.drop_index("ix_job_attempts_holding", table_name="job_attempts", **_WHERE)
    op.drop_column("job_attempts", "released_at")
