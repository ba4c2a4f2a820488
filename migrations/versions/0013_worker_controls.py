"""worker_controls: what an admin set on a worker — drain it, or give it another size
(issue 19) — kept apart from the ``workers`` rows that heartbeats overwrite.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 19:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.types

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker_controls",
        sa.Column("worker_id", sa.String(200), nullable=False),
        sa.Column("drain", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("cpu_units", sa.Integer(), nullable=True),
        sa.Column("memory_mb", sa.Integer(), nullable=True),
        sa.Column("updated_by", sa.String(200), nullable=True),
        sa.Column("updated_at", models.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("worker_id"),
    )


def downgrade() -> None:
    op.drop_table("worker_controls")
