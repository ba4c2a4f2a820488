"""Jobs that spawn jobs, and retention (issue 19).

- ``jobs.parent_id``: the job whose run submitted this one (``ctx.submit``/``ctx.batch``, or
  the continuation a parent asked for); NULL for everything else. Set to NULL when the parent
  row is deleted by retention, so a child outlives its parent's row.
- ``ix_jobs_parent``: a parent's children, newest first (``GET /jobs?parent_id=``).
- ``ix_jobs_finished``: finished jobs by the time they finished, so retention's sweep reads the
  oldest finished rows in small batches without touching active ones.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 10:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FINISHED = "status IN ('cancelled', 'completed', 'failed')"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("parent_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            "fk_jobs_parent_id", "jobs", ["parent_id"], ["id"], ondelete="SET NULL"
        )
    op.create_index(
        "ix_jobs_parent",
        "jobs",
        ["parent_id", "created_at", "id"],
        postgresql_where=sa.text("parent_id IS NOT NULL"),
        sqlite_where=sa.text("parent_id IS NOT NULL"),
    )
    op.create_index(
        "ix_jobs_finished",
        "jobs",
        ["finished_at", "id"],
        postgresql_where=sa.text(_FINISHED),
        sqlite_where=sa.text(_FINISHED),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_finished", table_name="jobs")
    op.drop_index("ix_jobs_parent", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("fk_jobs_parent_id", type_="foreignkey")
        batch.drop_column("parent_id")
