"""What a stream client asks for: the :class:`Command` model, parsed from the connection's
query parameters (a ``set``) or from a message on the socket."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from models.enums import JobStatus
from smartq.errors import StreamRequestError

EventType = Literal[
    "job.status",
    "job.log",
    "job.progress",
    "monitoring",
    "monitoring.queue",
    "monitoring.resource",
    "monitoring.logger",
    "breaker.state",
    "pause.changed",
]


class Command(BaseModel):
    """A message a client sends on the socket (the query parameters are a ``set``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["subscribe", "unsubscribe", "set", "ping"]
    job_ids: list[uuid.UUID] | None = None
    batch_ids: list[uuid.UUID] | None = None
    statuses: list[JobStatus] | None = None
    types: list[EventType] | None = None


_QUERY_FIELDS = {
    "job_id": "job_ids",
    "batch_id": "batch_ids",
    "status": "statuses",
    "type": "types",
}


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


def command_from_query(items: Iterable[tuple[str, str]]) -> Command:
    """``?job_id=…&job_id=…&batch_id=…&status=…&type=…`` as a ``set`` command."""
    fields: dict[str, list[str]] = {}
    for key, value in items:
        name = _QUERY_FIELDS.get(key)
        if name is None:
            known = ", ".join(_QUERY_FIELDS)
            raise StreamRequestError(f"unknown query parameter {key!r}; use {known}")
        fields.setdefault(name, []).append(value)
    try:
        return Command.model_validate({"action": "set", **fields})
    except ValidationError as exc:
        raise StreamRequestError(_first_error(exc)) from None


def parse_command(text: str | bytes) -> Command:
    """A command sent on the socket, as JSON."""
    try:
        return Command.model_validate_json(text)
    except ValidationError as exc:
        raise StreamRequestError(_first_error(exc)) from None
