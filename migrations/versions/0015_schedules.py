"""Cron schedules (issue 19): the ``schedules`` table, and ``schedule_id`` on the jobs and
batches a schedule's ticks make (NULL for everything submitted by hand; set to NULL when the
schedule is deleted, so its runs stay).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.types

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DUE = "paused = false AND next_fire_at IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(length=100), server_default=sa.text("'default'"), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("body", models.types.JsonType, nullable=False),
        sa.Column("template", models.types.JsonType, nullable=False),
        sa.Column("overlap", sa.String(length=16), nullable=False),
        sa.Column("catchup", sa.String(length=16), nullable=False),
        sa.Column("max_catchup", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("last_tick", models.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("next_fire_at", models.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_fired_tick", models.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_job_id", sa.Uuid(), nullable=True),
        sa.Column("last_batch_id", sa.Uuid(), nullable=True),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.Column("skipped", sa.BigInteger(), nullable=False),
        sa.Column("last_skip", sa.Text(), nullable=True),
        sa.Column("last_skip_at", models.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("created_at", models.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", models.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('job', 'batch')", name="ck_schedules_kind"),
        sa.CheckConstraint(
            "overlap IN ('skip', 'allow', 'cancel_previous')", name="ck_schedules_overlap"
        ),
        sa.CheckConstraint("catchup IN ('none', 'latest', 'all')", name="ck_schedules_catchup"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_schedules_due",
        "schedules",
        ["next_fire_at"],
        postgresql_where=sa.text(_DUE),
        sqlite_where=sa.text(_DUE),
    )
    op.create_index("ix_schedules_tenant_created", "schedules", ["tenant", "created_at", "id"])
    for table in ("jobs", "batches"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("schedule_id", sa.Uuid(), nullable=True))
            batch.create_foreign_key(
                f"fk_{table}_schedule_id", "schedules", ["schedule_id"], ["id"], ondelete="SET NULL"
            )
    op.create_index(
        "ix_jobs_schedule",
        "jobs",
        ["schedule_id", "created_at", "id"],
        postgresql_where=sa.text("schedule_id IS NOT NULL"),
        sqlite_where=sa.text("schedule_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_schedule", table_name="jobs")
    for table in ("batches", "jobs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_schedule_id", type_="foreignkey")
            batch.drop_column("schedule_id")
    op.drop_index("ix_schedules_tenant_created", table_name="schedules")
    op.drop_index("ix_schedules_due", table_name="schedules")
    op.drop_table("schedules")
