"""The tables of batch callbacks (issue 19): what a batch asked to be told, and each delivery
with its attempts. Apart from :mod:`models.tables` (one module per concept); imported there,
so ``models.tables.metadata`` holds them for Alembic and the tests.

Both reference ``batches`` with ``ON DELETE CASCADE``: retention deleting an old batch takes
its callbacks and their delivery log with it. ``job_id`` is no foreign key: a job's row may go
before its batch's, and the log says what was sent about it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlmodel import Field, SQLModel

from models.types import JsonType, UtcDateTime

DELIVERY_STATUSES = ("pending", "delivered", "failed", "refused")


def _where(sql: str) -> dict[str, Any]:
    clause = text(sql)
    return {"postgresql_where": clause, "sqlite_where": clause}


def _batch_column() -> Column[uuid.UUID]:
    return Column(Uuid, ForeignKey("batches.id", ondelete="CASCADE"), nullable=False)


class BatchCallback(SQLModel, table=True):
    """A URL a batch's submitter asked smartq to POST some of its events to."""

    __tablename__ = "batch_callbacks"
    __table_args__ = (
        Index("ix_batch_callbacks_batch", "batch_id"),
        # What the leading scheduler scans: callbacks whose batch has not finished yet (done:
        # everything the callback can hear of is enqueued), so finished batches cost nothing.
        Index("ix_batch_callbacks_open", "created_at", **_where("done = false")),
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    batch_id: uuid.UUID = Field(sa_column=_batch_column())
    tenant: str = Field(sa_column=Column(String(100), nullable=False))
    url: str = Field(sa_column=Column(Text, nullable=False))
    #: The event names asked for (``smartq.callbacks.EVENT_NAMES``).
    events: list[str] = Field(sa_column=Column(JsonType, nullable=False))
    done: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false"))
    )
    created_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))


class CallbackDelivery(SQLModel, table=True):
    """One event for one callback: its body, and how delivering it went. Its id is the
    delivery id receivers deduplicate on (``Smartq-Delivery``)."""

    __tablename__ = "callback_deliveries"
    __table_args__ = (
        CheckConstraint(
            "status IN ({})".format(", ".join(f"'{s}'" for s in DELIVERY_STATUSES)),
            name="ck_callback_deliveries_status",
        ),
        # Each event once per callback, whichever scheduler derives it (ON CONFLICT DO
        # NOTHING). A key, not (event, job_id): NULLs are distinct in a unique index.
        UniqueConstraint("callback_id", "event_key", name="ux_callback_deliveries_event"),
        # What the deliverer polls: pending deliveries by when they are due.
        Index("ix_callback_deliveries_due", "next_attempt_at", **_where("status = 'pending'")),
        # GET /batches/{id}/deliveries, oldest first.
        Index("ix_callback_deliveries_batch", "batch_id", "created_at", "id"),
    )

    id: uuid.UUID = Field(sa_column=Column(Uuid, primary_key=True))
    callback_id: uuid.UUID = Field(
        sa_column=Column(Uuid, ForeignKey("batch_callbacks.id", ondelete="CASCADE"), nullable=False)
    )
    batch_id: uuid.UUID = Field(sa_column=_batch_column())
    event: str = Field(sa_column=Column(String(32), nullable=False))
    #: ``batch.started``, ``batch.finished``, ``job.failed:<job>:<attempt>``.
    event_key: str = Field(sa_column=Column(String(100), nullable=False))
    job_id: uuid.UUID | None = Field(default=None, sa_column=Column(Uuid))
    #: The exact bytes sent on every attempt (JSON text; jsonb would reorder its keys).
    body: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    last_status_code: int | None = Field(default=None, sa_column=Column(Integer))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    #: Every attempt: ``{"at", "status_code", "error", "ms"}`` (the newest 100).
    history: list[dict[str, Any]] = Field(sa_column=Column(JsonType, nullable=False))
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    first_attempt_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    delivered_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime))
    created_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime, nullable=False))
