"""Flow control (issue 17): per-tenant quotas and shares, per-type limits set by an admin, and
the circuit breakers' state.

* ``tenants``: what an admin set for a tenant (``PUT /admin/tenants/{name}``); a tenant with
  no row, or a NULL column, gets the settings' default (unset = unlimited; weight 1). Written
  by the API only.
* ``job_type_limits``: an admin's override of a type's ``rate_limit`` / ``max_running`` (NULL:
  the ``@smartq.job`` decorator's value) and a forced breaker (``breaker_force`` open/closed).
  Written by the API only.
* ``breakers``: each type's breaker as the leading scheduler last left it, so a standby that
  takes over keeps an open breaker open. Written by the scheduler only.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("max_active_jobs", sa.Integer(), nullable=True),
        sa.Column("submit_rate", sa.Float(), nullable=True),
        sa.Column("max_running", sa.Integer(), nullable=True),
        sa.Column("weight", sa.Float(), nullable=True),
        sa.Column("updated_at", models.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "job_type_limits",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("rate_limit", sa.String(length=40), nullable=True),
        sa.Column("max_running", sa.Integer(), nullable=True),
        sa.Column("breaker_force", sa.String(length=8), nullable=True),
        sa.Column("updated_at", models.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "breaker_force IS NULL OR breaker_force IN ('open', 'closed')",
            name="ck_job_type_limits_breaker_force",
        ),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "breakers",
        sa.Column("job_type", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("opened_at", models.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("cooldown_seconds", sa.Float(), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("updated_at", models.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_type"),
    )


def downgrade() -> None:
    op.drop_table("breakers")
    op.drop_table("job_type_limits")
    op.drop_table("tenants")
