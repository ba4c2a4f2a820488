"""Retention's sweep on PostgreSQL and SQLite: old finished jobs go with their attempts, logs,
progress, edges and emptied batches, in several short transactions; young ones, active ones
however old, and finished ones something unfinished still depends on (or a parent whose
children run) stay — until that changes. Run by the leading scheduler on both backends."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from models import deletes
from scheduler import tick_store
from scheduler.sweep import Sweeper
from smartq.settings import Settings
from tests.oldjobs import add_batch, add_job, batches_t, exists, left
from tests.system import System, until

OLD, YOUNG = 40.0, 5.0


def sweeper(engine: AsyncEngine, **settings: Any) -> Sweeper:
    deleted: dict[str, int] = {}

    def tell(counts: Any) -> None:
        for status, n in counts.items():
            deleted[status] = deleted.get(status, 0) + n

    sweep = Sweeper(engine, Settings(**{"job_retention_days": 30, **settings}), time.time, tell)
    sweep.told = deleted  # type: ignore[attr-defined]
    return sweep


async def test_old_finished_jobs_go_with_everything_theirs(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        old = [await add_job(conn, s, OLD) for s in ("completed", "failed", "cancelled")]
        young = await add_job(conn, "completed", YOUNG)
        active = [await add_job(conn, s, OLD * 3) for s in ("running", "pending", "retrying")]
        # however old its finished_at says it is, a job that is not final stays
        stale = await add_job(conn, "ready", OLD, finished_at=None)
        await conn.execute(
            update(deletes.jobs).where(deletes.jobs.c.id == stale).values(finished_at=None)
        )
    sweep = sweeper(engine)
    out = await sweep.sweep()
    assert out is not None and out.total == 3 and out.lines == 6
    assert sweep.told == {"completed": 1, "failed": 1, "cancelled": 1}  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        assert await left(conn, old) == dict.fromkeys(
            ("jobs", "attempts", "logs", "progress", "edges"), 0
        )
        for kept in [young, *active, stale]:
            assert await exists(conn, kept)
        assert (await left(conn, [young]))["logs"] == 2


async def test_a_job_an_unfinished_job_depends_on_stays_until_that_one_finishes(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        upstream = await add_job(conn, "completed", OLD)
        downstream = await add_job(conn, "blocked", OLD, depends_on=[upstream])
        done_upstream = await add_job(conn, "completed", OLD)
        await add_job(conn, "completed", YOUNG, depends_on=[done_upstream])
    sweep = sweeper(engine)
    assert (await sweep.sweep()).total == 1  # type: ignore[union-attr]
    async with engine.connect() as conn:
        assert await exists(conn, upstream)
        assert not await exists(conn, done_upstream)  # its dependent is final: no guard
        # a schedule pointing at a deleted run sees it as ended, not as an error
        assert not await tick_store.run_active(conn, done_upstream, None)
    async with engine.begin() as conn:
        await conn.execute(
            update(deletes.jobs)
            .where(deletes.jobs.c.id == downstream)
            .values(status="completed", finished_at=deletes.jobs.c.updated_at)
        )
    assert (await sweep.sweep()).total == 2  # type: ignore[union-attr]
    async with engine.connect() as conn:
        assert (await left(conn, [upstream, downstream]))["jobs"] == 0


async def test_a_parent_stays_while_a_job_it_spawned_is_active(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        parent = await add_job(conn, "completed", OLD)
        child = await add_job(conn, "running", YOUNG, parent_id=parent)
    sweep = sweeper(engine)
    assert (await sweep.sweep()).total == 0  # type: ignore[union-attr]
    async with engine.begin() as conn:
        await conn.execute(
            update(deletes.jobs).where(deletes.jobs.c.id == child).values(status="completed")
        )
    assert (await sweep.sweep()).total == 1  # type: ignore[union-attr]
    async with engine.connect() as conn:
        assert not await exists(conn, parent)
        row = (await conn.execute(select(deletes.jobs).where(deletes.jobs.c.id == child))).one()
        assert row.parent_id is None  # the child outlives its parent's row


async def test_a_sweep_deletes_in_several_short_transactions_up_to_its_cap(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deletes, "LOG_LINES_PER_STEP", 10)
    async with engine.begin() as conn:
        ids = [await add_job(conn, "completed", OLD + i, lines=3) for i in range(11)]
        chatty = await add_job(conn, "failed", OLD + 20, lines=35)  # the oldest
    runs: list[int] = []
    sweep = sweeper(engine, retention_batch_size=3, retention_max_per_sweep=9)
    original = deletes.take

    async def counted(conn: Any, sel: Any, limit: int) -> Any:
        taken = await original(conn, sel, limit)
        runs.append(taken.jobs)
        return taken

    monkeypatch.setattr(deletes, "take", counted)
    first = await sweep.sweep()
    assert first is not None and first.total == 9 and first.more
    # the cap's 9 jobs 3 at a time, the first three after four steps of only their 41 lines
    assert runs == [0, 0, 0, 0, 3, 3, 3]
    second = await sweep.sweep()
    assert second is not None and second.total == 3 and not second.more
    async with engine.connect() as conn:
        assert await left(conn, [*ids, chatty]) == dict.fromkeys(
            ("jobs", "attempts", "logs", "progress", "edges"), 0
        )


async def test_a_batch_goes_with_its_last_job(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        emptied = await add_batch(conn, OLD + 1)
        await add_job(conn, "completed", OLD, batch_id=emptied)
        await add_job(conn, "failed", OLD, batch_id=emptied)
        half = await add_batch(conn, OLD + 1)
        await add_job(conn, "completed", OLD, batch_id=half)
        await add_job(conn, "completed", YOUNG, batch_id=half)
    out = await sweeper(engine).sweep()
    assert out is not None and out.total == 3 and out.batches == 1
    async with engine.connect() as conn:
        kept = {r[0] for r in await conn.execute(select(batches_t.c.id))}
    assert emptied not in kept and half in kept


async def test_retention_zero_keeps_everything(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        job = await add_job(conn, "completed", OLD * 100)
    sweep = sweeper(engine, job_retention_days=0)
    assert await sweep.sweep() is None
    await sweep.run()  # returns at once: nothing to sweep, ever
    async with engine.connect() as conn:
        assert await exists(conn, job)


@pytest.mark.system_settings(job_retention_days=2 / 86_400, retention_sweep_seconds=0.2)
async def test_the_leading_scheduler_sweeps(system: System) -> None:
    system.start_scheduler()
    system.start_logger()
    system.start_worker("w1")
    jobs = await system.batch(
        {"key": "a", "type": "log", "payload": {"lines": 3}},
        {"key": "b", "type": "noop", "depends_on": ["a"]},
    )
    ids = [jobs["a"]["id"], jobs["b"]["id"]]
    await system.wait_final(ids)

    async def gone() -> bool:
        codes = [(await system.client.get(f"/jobs/{i}")).status_code for i in ids]
        return codes == [404, 404]

    await until(gone, timeout=20)
    async with system.engine.connect() as conn:
        assert await left(conn, [uuid.UUID(i) for i in ids]) == dict.fromkeys(
            ("jobs", "attempts", "logs", "progress", "edges"), 0
        )
    batch_id = jobs["a"]["batch_id"]
    assert (await system.client.get(f"/batches/{batch_id}")).status_code == 404


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # one writer on SQLite
async def test_a_submit_naming_an_old_job_keeps_it_from_the_sweep_until_it_commits(
    engine: AsyncEngine,
) -> None:
    """The race of a submit that names an old job in ``depends_on`` while the sweep takes it:
    the submit's check of its dependencies holds them (``FOR KEY SHARE``), so the sweep skips
    the job instead of deleting it between the check and the submit's edge (which failed on
    the foreign key: a 500)."""
    from api.store import existing_ids

    async with engine.begin() as conn:
        old = await add_job(conn, "completed", OLD)
    async with engine.connect() as submit:
        await submit.begin()
        assert await existing_ids(submit, [old], "default") == {old}
        swept = await sweeper(engine).sweep()  # while the submit is in flight
        assert swept is None or swept.total == 0
        await submit.rollback()
    async with engine.connect() as conn:
        assert await exists(conn, old)
    assert (await sweeper(engine).sweep()).total == 1  # type: ignore[union-attr]
