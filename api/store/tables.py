"""The tables the API reads and writes, as SQLAlchemy ``Table`` handles."""

from __future__ import annotations

from sqlalchemy import Table

from models.enums import CANCELLABLE_AT_ONCE
from models.tables import Batch, Job, JobAttempt, JobDependency, JobLog, JobProgressRow, Worker

jobs: Table = Job.__table__  # type: ignore[attr-defined]
edges: Table = JobDependency.__table__  # type: ignore[attr-defined]
batches: Table = Batch.__table__  # type: ignore[attr-defined]
attempts_t: Table = JobAttempt.__table__  # type: ignore[attr-defined]
logs_t: Table = JobLog.__table__  # type: ignore[attr-defined]
workers_t: Table = Worker.__table__  # type: ignore[attr-defined]
progress_t: Table = JobProgressRow.__table__  # type: ignore[attr-defined]
#: Statuses a cancel ends at once (the job holds no worker).
WAITING = tuple(s.value for s in CANCELLABLE_AT_ONCE)
