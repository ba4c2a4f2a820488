"""The leader's fencing token (issue 20): one row whose ``epoch`` goes up by one each time a
scheduler becomes the leader. Apart from :mod:`models.tables` (one module per concept);
imported there, so ``models.tables.metadata`` holds it for Alembic and the tests.

A pass writes only while the row still carries the epoch its scheduler took on acquiring
(``scheduler.pass_sql``): a leader that was frozen or cut off, and whose lock has since gone to
the standby, cannot write a decision when it comes back, whatever it still believes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, SmallInteger, Text
from sqlmodel import Field, SQLModel

from models.types import UtcDateTime


class SchedulerLeadership(SQLModel, table=True):
    __tablename__ = "scheduler_leadership"
    __table_args__ = (CheckConstraint("id = 1", name="ck_scheduler_leadership_one_row"),)

    id: int = Field(default=1, sa_column=Column(SmallInteger, primary_key=True))
    epoch: int = Field(sa_column=Column(BigInteger, nullable=False))
    #: Who took it last: ``host:pid``, as the leader's sessions name themselves.
    holder: str = Field(sa_column=Column(Text, nullable=False))
    acquired_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
