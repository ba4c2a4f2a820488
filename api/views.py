"""Database rows → API bodies."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import RowMapping

from api.schemas import JobPublic, RetryOut, priority_out


def job_public(row: RowMapping | dict[str, Any], depends_on: list[uuid.UUID] | None) -> JobPublic:
    return JobPublic(
        id=row["id"],
        key=row["key"],
        name=row["name"],
        type=row["type"],
        payload=row["payload"],
        priority=priority_out(row["priority"]),
        cpu_units=row["cpu_units"],
        memory_mb=row["memory_mb"],
        depends_on=depends_on,
        retry=RetryOut(
            max_attempts=row["max_attempts"],
            initial_delay_seconds=row["initial_delay_seconds"],
            backoff_multiplier=row["backoff_multiplier"],
        ),
        timeout_seconds=row["timeout_seconds"],
        run_at=row["run_at"],
        idempotency_key=row["idempotency_key"],
        status=row["status"],
        status_reason=row["status_reason"],
        attempts=row["attempts"],
        result=row["result"],
        error=row["error"],
        batch_id=row["batch_id"],
        worker_id=row["worker_id"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )
