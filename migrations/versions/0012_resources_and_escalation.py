"""Named resources and labels (a job asks for them, a worker declares them), and what memory
escalation keeps (issue 18): the memory a job asks for after a kill for memory and how often it
was raised, and on each attempt how it failed and the most memory it was seen to use.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 18:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.types

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as jobs:
        jobs.add_column(sa.Column("resources", models.types.JsonType, nullable=True))
        jobs.add_column(sa.Column("labels", models.types.JsonType, nullable=True))
        jobs.add_column(sa.Column("memory_escalated_mb", sa.Integer(), nullable=True))
        jobs.add_column(
            sa.Column(
                "memory_escalations", sa.Integer(), nullable=False, server_default=sa.text("0")
            )
        )
    with op.batch_alter_table("job_attempts") as attempts:
        attempts.add_column(sa.Column("failure_class", sa.String(16), nullable=True))
        attempts.add_column(sa.Column("peak_memory_mb", sa.Integer(), nullable=True))
    with op.batch_alter_table("workers") as workers:
        workers.add_column(sa.Column("resources", models.types.JsonType, nullable=True))
        workers.add_column(sa.Column("labels", models.types.JsonType, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as workers:
        workers.drop_column("labels")
        workers.drop_column("resources")
    with op.batch_alter_table("job_attempts") as attempts:
        attempts.drop_column("peak_memory_mb")
        attempts.drop_column("failure_class")
    with op.batch_alter_table("jobs") as jobs:
        jobs.drop_column("memory_escalations")
        jobs.drop_column("memory_escalated_mb")
        jobs.drop_column("labels")
        jobs.drop_column("resources")
