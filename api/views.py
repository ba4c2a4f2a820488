"""Database rows → API bodies.

:func:`job_doc` is the one definition of how a job is shown. Most routes wrap it in the
:class:`~api.schemas.JobPublic` model; the submit routes encode it straight to JSON
(:func:`json_response`), because validating and serialising 10,000 models again took longer
than writing the batch. A test checks that both give the same document.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import Response
from sqlalchemy import RowMapping

from api.schemas import JobPublic, priority_out


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def job_doc(row: RowMapping | dict[str, Any], depends_on: list[uuid.UUID] | None) -> dict[str, Any]:
    return {
        "id": row["id"],
        "key": row["key"],
        "name": row["name"],
        "type": row["type"],
        "payload": row["payload"],
        "priority": priority_out(row["priority"]),
        "cpu_units": row["cpu_units"],
        "memory_mb": row["memory_mb"],
        "resources": row["resources"] or {},
        "labels": row["labels"] or {},
        # A submission's own values have none yet.
        "memory_escalated_mb": row.get("memory_escalated_mb"),
        "memory_escalations": row.get("memory_escalations") or 0,
        "depends_on": depends_on,
        "retry": {
            "max_attempts": row["max_attempts"],
            "initial_delay_seconds": float(row["initial_delay_seconds"]),
            "backoff_multiplier": float(row["backoff_multiplier"]),
        },
        "timeout_seconds": _float(row["timeout_seconds"]),
        "run_at": row["run_at"],
        "idempotency_key": row["idempotency_key"],
        "status": row["status"],
        "status_reason": row["status_reason"],
        "attempts": row["attempts"],
        "result": row["result"],
        "error": row["error"],
        "batch_id": row["batch_id"],
        "worker_id": row["worker_id"],
        "tenant": row["tenant"],
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "schedule_id": row.get("schedule_id"),
        "parent_id": row.get("parent_id"),
    }


def job_public(row: RowMapping | dict[str, Any], depends_on: list[uuid.UUID] | None) -> JobPublic:
    return JobPublic.model_validate(job_doc(row, depends_on))


def json_response(doc: Any, status_code: int, headers: Mapping[str, str] | None = None) -> Response:
    """``doc`` as JSON, encoded like the models are (UTC as ``Z``), without re-validation."""
    return Response(
        orjson.dumps(doc, option=orjson.OPT_UTC_Z),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )
