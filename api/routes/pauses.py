"""Pause and resume: a batch (its owner, with the ``cancel`` scope), a job type or everything
(admin keys). A paused job stays waiting with the reason ``paused: … by … at …``; running jobs
finish; nothing new of it starts until it is resumed. Pauses live in the ``pauses`` table,
which the leading scheduler polls (within ``SMARTQ_LIMITS_POLL_SECONDS``), so they outlive a
failover; each change the scheduler applies is a ``pause.changed`` event on the stream."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from api import store
from api.auth import AUTH_ERRORS, AdminDep, Cancel
from api.deps import ConnDep
from api.routes.types import TypeName
from api.schemas import ErrorBody
from models.types import utcnow

router = APIRouter(tags=["pauses"], responses=AUTH_ERRORS)
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (404, 422)}


class PauseOut(BaseModel):
    """A pause: ``kind`` all, type or batch; ``name`` ``*``, the type or the batch id."""

    kind: str
    name: str
    paused: bool
    paused_by: str | None = Field(description="The id of the key that paused it.")
    paused_at: datetime | None


def _out(kind: str, name: str, row: RowMapping | None) -> PauseOut:
    return PauseOut(
        kind=kind,
        name=name,
        paused=row is not None,
        paused_by=None if row is None else row["paused_by"],
        paused_at=None if row is None else row["paused_at"],
    )


async def _pause(conn: AsyncConnection, kind: str, name: str, by: str | None) -> PauseOut:
    return _out(kind, name, await store.put_pause(conn, kind, name, by, utcnow()))


async def _resume(conn: AsyncConnection, kind: str, name: str) -> PauseOut:
    await store.delete_pause(conn, kind, name)
    return _out(kind, name, None)


async def _own_batch(conn: AsyncConnection, batch_id: uuid.UUID, access: Any) -> str:
    if await store.get_batch(conn, batch_id, access.tenant) is None:
        raise HTTPException(404, f"no batch {batch_id}")
    return str(batch_id)


@router.post("/batches/{batch_id}/pause", response_model=PauseOut, responses=_ERRORS)
async def pause_batch(batch_id: uuid.UUID, access: Cancel, conn: ConnDep) -> PauseOut:
    """Start nothing more of the batch until it is resumed; what runs finishes."""
    name = await _own_batch(conn, batch_id, access)
    return await _pause(conn, "batch", name, access.caller.key_id)


@router.post("/batches/{batch_id}/resume", response_model=PauseOut, responses=_ERRORS)
async def resume_batch(batch_id: uuid.UUID, access: Cancel, conn: ConnDep) -> PauseOut:
    """Let the batch's waiting jobs start again."""
    return await _resume(conn, "batch", await _own_batch(conn, batch_id, access))


@router.post("/types/{name}/pause", response_model=PauseOut, responses=_ERRORS)
async def pause_type(name: TypeName, caller: AdminDep, conn: ConnDep) -> PauseOut:
    """Start no job of the type (any tenant's) until it is resumed; other types go on."""
    return await _pause(conn, "type", name, caller.key_id)


@router.post("/types/{name}/resume", response_model=PauseOut, responses=_ERRORS)
async def resume_type(name: TypeName, caller: AdminDep, conn: ConnDep) -> PauseOut:
    return await _resume(conn, "type", name)


@router.post("/admin/pause", response_model=PauseOut)
async def pause_all(caller: AdminDep, conn: ConnDep) -> PauseOut:
    """Start nothing at all until resumed; what runs finishes."""
    return await _pause(conn, "all", "*", caller.key_id)


@router.post("/admin/resume", response_model=PauseOut)
async def resume_all(caller: AdminDep, conn: ConnDep) -> PauseOut:
    return await _resume(conn, "all", "*")


@router.get("/admin/pauses", response_model=list[PauseOut])
async def list_pauses(caller: AdminDep, conn: ConnDep) -> list[PauseOut]:
    """Every pause in force."""
    return [_out(r["kind"], r["name"], r) for r in await store.pause_rows(conn)]
