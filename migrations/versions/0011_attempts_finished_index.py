"""An index of successful attempts by when they finished: a scheduler that starts (or a standby
that takes over) reads the last few thousand to predict run times like the one before it did
(issue 18), without sorting every attempt ever made.

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-02 11:40:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHERE: dict[str, Any] = {
    "postgresql_where": sa.text("outcome = 'succeeded'"),
    "sqlite_where": sa.text("outcome = 'succeeded'"),
}


def upgrade() -> None:
    op.create_index("ix_job_attempts_succeeded", "job_attempts", ["finished_at"], **_WHERE)


def downgrade() -> None:
    op.drop_index("ix_job_attempts_succeeded", table_name="job_attempts", **_WHERE)
