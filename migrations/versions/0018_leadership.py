"""The leader's fencing token (issue 20): ``scheduler_leadership``, one row whose ``epoch`` a
scheduler raises on becoming the leader and every pass checks (``scheduler.pass_sql``).

The row is inserted here with epoch 0, so acquiring is always an ``UPDATE`` that waits for any
pass still holding the row.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.types

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "scheduler_leadership",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("acquired_at", models.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_scheduler_leadership_one_row"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute(
        table.insert().values(id=1, epoch=0, holder="", acquired_at=sa.func.current_timestamp())
    )


def downgrade() -> None:
    op.drop_table("scheduler_leadership")
