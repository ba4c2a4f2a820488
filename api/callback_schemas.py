"""Request and response bodies of batch callbacks (issue 19): what a batch submit asks to be
told (``callbacks`` on ``POST /jobs/batch``) and the delivery log
(``GET /batches/{id}/deliveries``). The URL's SSRF checks need the settings' allowance, so
they run in :mod:`api.callbacks`, not here."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from smartq.callbacks import Event

#: Callbacks one batch may ask for, at most.
MAX_CALLBACKS = 5
MAX_URL_LENGTH = 2000


class CallbackCreate(BaseModel):
    """Where to POST some of a batch's events (signed: see ``Smartq-Signature``)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="http or https; not loopback, private or link-local unless the operator "
        "allows it (SMARTQ_CALLBACK_ALLOWED_HOSTS).",
    )
    events: list[Event] = Field(
        min_length=1, description="Any of batch.started, batch.finished, job.failed."
    )

    @field_validator("events")
    @classmethod
    def _once_each(cls, events: list[Event]) -> list[Event]:
        return list(dict.fromkeys(events))


class AttemptRecord(BaseModel):
    """One delivery attempt: when, the answer's status (null: none came) and what failed."""

    at: datetime
    status_code: int | None
    error: str | None
    ms: float


class DeliveryOut(BaseModel):
    """One event for one callback, and how delivering it went. ``id`` is what the receiver
    gets as ``Smartq-Delivery`` (and ``delivery_id`` in the body), the same on every retry."""

    id: uuid.UUID
    callback_id: uuid.UUID
    url: str
    event: str
    job_id: uuid.UUID | None
    status: str = Field(description="pending, delivered, failed (gave up) or refused (guard).")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None = Field(description="The next retry (pending only).")
    first_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    history: list[AttemptRecord] = Field(description="Every attempt, oldest first.")


class CallbackOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    done: bool = Field(description="Every event it can hear of is enqueued (the batch ended).")


class DeliveryPage(BaseModel):
    batch_id: uuid.UUID
    callbacks: list[CallbackOut]
    items: list[DeliveryOut]
    next_cursor: str | None


def delivery_out(row: Any) -> DeliveryOut:
    return DeliveryOut.model_validate(dict(row))
