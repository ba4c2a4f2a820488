"""The leader's lock and its fencing token on PostgreSQL (scheduler/leader.py, issue 20): a
silent leader's session ends after its lease, and a pass of a leader whose token moved on
writes nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scheduler.leader import Leadership, LeadershipLost
from scheduler.pass_sql import PassConnection
from scheduler.rows import AttemptWrites, JobWrite, PassWrite
from smartq.db import create_async, psycopg_dsn
from tests.databases import PostgresDatabases
from tests.oldjobs import add_job


@pytest.fixture
async def pg(postgres_databases: PostgresDatabases) -> AsyncIterator[AsyncEngine]:
    url = postgres_databases.create()
    engine = create_async(url)
    yield engine
    await engine.dispose()
    postgres_databases.drop(url)


def _move(job_id: uuid.UUID) -> PassWrite:
    """A pass that moves one pending job to ready."""
    write = JobWrite(
        id=job_id, from_status="pending", from_attempts=0, status="ready", attempts=0, reason=None
    )
    return PassWrite(
        jobs=[write],
        placements=[],
        attempts=AttemptWrites(closes=[], releases=[], drops=[]),
        workers=[],
        gone=[],
        now=datetime.now(UTC),
    )


async def _status(engine: AsyncEngine, job_id: uuid.UUID) -> str:
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT status FROM jobs WHERE id = :i"), {"i": job_id})
        return str(found.scalar_one())


async def test_each_leader_takes_a_new_token_and_a_standby_waits(pg: AsyncEngine) -> None:
    first, second = Leadership(pg, lease_seconds=5), Leadership(pg, lease_seconds=5)
    try:
        assert await first.acquire()
        assert first.epoch == 1
        assert not await second._try()  # the lock is held: a standby
        await first.release()
        assert await second.acquire()
        assert second.epoch == 2
    finally:
        await first.release()
        await second.release()


async def test_a_silent_leader_loses_its_lock_after_the_lease(pg: AsyncEngine) -> None:
    """No ping for a lease (a frozen process, a stalled path): the server ends the lock's
    session, though its TCP connection is open, and the standby can lead."""
    silent, standby = Leadership(pg, lease_seconds=2), Leadership(pg, lease_seconds=2)
    try:
        assert await silent.acquire()
        assert not await standby._try()
        began = time.monotonic()
        while not await standby._try():
            assert time.monotonic() - began < 10, "the silent leader kept its lock"
            await asyncio.sleep(0.2)
        assert time.monotonic() - began > 1.5
        assert standby.epoch == 2
    finally:
        await silent.release()
        await standby.release()


async def test_a_pinging_leader_keeps_its_lock_past_the_lease(pg: AsyncEngine) -> None:
    leader, standby = Leadership(pg, lease_seconds=2), Leadership(pg, lease_seconds=2)
    keeper = None
    try:
        assert await leader.acquire()
        keeper = asyncio.create_task(leader.keep())
        await asyncio.sleep(5)
        assert not await standby._try()
        assert not leader.lost.is_set()
    finally:
        if keeper is not None:
            keeper.cancel()
        await leader.release()
        await standby.release()


async def test_a_leader_whose_session_was_ended_steps_down(pg: AsyncEngine) -> None:
    leader = Leadership(pg, lease_seconds=2)
    try:
        assert await leader.acquire()
        assert leader._conn is not None
        pid = leader._conn.pgconn.backend_pid
        keeper = asyncio.create_task(leader.keep())
        async with pg.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        await asyncio.wait_for(leader.lost.wait(), 5)
        await asyncio.wait_for(keeper, 1)
        assert not await leader.still_leader()
    finally:
        await leader.release()


async def test_a_pass_of_a_leader_whose_token_moved_on_writes_nothing(pg: AsyncEngine) -> None:
    async with pg.begin() as conn:
        job_id = await add_job(conn, "pending", attempts=0, lines=0)
    old, new = Leadership(pg, lease_seconds=5), Leadership(pg, lease_seconds=5)
    store = PassConnection(psycopg_dsn(pg.url))
    try:
        assert await old.acquire()
        store.epoch = old.epoch
        await old.release()  # as the server does for a frozen leader's session
        assert await new.acquire()
        with pytest.raises(LeadershipLost):
            await store.write(_move(job_id))
        assert await _status(pg, job_id) == "pending"
        store.epoch = new.epoch
        won = await store.write(_move(job_id))
        assert list(won) == [job_id]
        assert await _status(pg, job_id) == "ready"
    finally:
        await store.close()
        await old.release()
        await new.release()


async def test_a_pass_without_a_token_writes_nothing(pg: AsyncEngine) -> None:
    async with pg.begin() as conn:
        job_id = await add_job(conn, "pending", attempts=0, lines=0)
    store = PassConnection(psycopg_dsn(pg.url))
    try:
        with pytest.raises(LeadershipLost):
            await store.write(_move(job_id))
        assert await _status(pg, job_id) == "pending"
    finally:
        await store.close()
