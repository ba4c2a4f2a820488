"""The scheduler's inbox: the messages of one pass, decoded and sorted by kind."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from models.messages import (
    AttemptFinished,
    CancelRequested,
    Heartbeat,
    JobsSpawned,
    JobsSubmitted,
    ResourcesReleased,
    SchedulerProbe,
    scheduler_inbound,
    unpack,
)
from smartq.broker import IncomingMessage

log = logging.getLogger(__name__)


@dataclass
class Inbox:
    """Messages of one pass, decoded and grouped. ``beats`` keeps each worker's last one."""

    submitted: list[uuid.UUID] = field(default_factory=list)
    cancels: list[uuid.UUID] = field(default_factory=list)
    finished: list[AttemptFinished] = field(default_factory=list)
    released: list[ResourcesReleased] = field(default_factory=list)
    #: Jobs running attempts submitted, to insert before anything else (scheduler.spawns).
    spawned: list[JobsSpawned] = field(default_factory=list)
    beats: dict[str, Heartbeat] = field(default_factory=dict)
    probed: bool = False

    def add(self, doc: Any) -> None:
        if isinstance(doc, JobsSubmitted):
            self.submitted.extend(doc.job_ids)
        elif isinstance(doc, CancelRequested):
            self.cancels.append(doc.job_id)
        elif isinstance(doc, AttemptFinished):
            self.finished.append(doc)
        elif isinstance(doc, ResourcesReleased):
            self.released.append(doc)
        elif isinstance(doc, JobsSpawned):
            self.spawned.append(doc)
        elif isinstance(doc, SchedulerProbe):
            self.probed = True
        elif isinstance(doc, Heartbeat):
            self.beats[doc.worker_id] = doc


def decode(messages: Iterable[IncomingMessage]) -> Inbox:
    """Every message's documents (one, or a batch of them); a malformed message is dropped
    whole, with a warning, and the pass goes on."""
    inbox = Inbox()
    for message in messages:
        try:
            docs = [scheduler_inbound.validate_python(item) for item in unpack(message.body)]
        except (ValidationError, ValueError):
            log.warning(
                "dropping a malformed message",
                extra={"action": "scheduler.malformed", "routing_key": message.routing_key},
            )
            continue
        for doc in docs:
            inbox.add(doc)
    return inbox
