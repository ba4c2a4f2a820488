"""Batch callbacks (issue 19): ``batch_callbacks`` (what a batch asked to be told, and where),
``callback_deliveries`` (each event once per callback, its body and its attempts: the delivery
log) and ``tenants.callback_secret`` (what a tenant's deliveries are signed with; NULL: the
setting's default). Both tables cascade from ``batches``, so deleting an old batch takes them.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.types

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = models.types.UtcDateTime(timezone=True)


def _where(sql: str) -> dict[str, object]:
    return {"postgresql_where": sa.text(sql), "sqlite_where": sa.text(sql)}


def upgrade() -> None:
    op.create_table(
        "batch_callbacks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", models.types.JsonType, nullable=False),
        sa.Column("done", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_batch_callbacks_batch", "batch_callbacks", ["batch_id"])
    op.create_index(
        "ix_batch_callbacks_open", "batch_callbacks", ["created_at"], **_where("done = false")
    )
    op.create_table(
        "callback_deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("callback_id", sa.Uuid(), nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("event_key", sa.String(length=100), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("history", models.types.JsonType, nullable=False),
        sa.Column("next_attempt_at", _TS, nullable=True),
        sa.Column("first_attempt_at", _TS, nullable=True),
        sa.Column("delivered_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed', 'refused')",
            name="ck_callback_deliveries_status",
        ),
        sa.ForeignKeyConstraint(["callback_id"], ["batch_callbacks.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("callback_id", "event_key", name="ux_callback_deliveries_event"),
    )
    op.create_index(
        "ix_callback_deliveries_due",
        "callback_deliveries",
        ["next_attempt_at"],
        **_where("status = 'pending'"),
    )
    op.create_index(
        "ix_callback_deliveries_batch", "callback_deliveries", ["batch_id", "created_at", "id"]
    )
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("callback_secret", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("callback_secret")
    op.drop_index("ix_callback_deliveries_batch", table_name="callback_deliveries")
    op.drop_index("ix_callback_deliveries_due", table_name="callback_deliveries")
    op.drop_table("callback_deliveries")
    op.drop_index("ix_batch_callbacks_open", table_name="batch_callbacks")
    op.drop_index("ix_batch_callbacks_batch", table_name="batch_callbacks")
    op.drop_table("batch_callbacks")
