"""Property tests: random DAGs, resources, workers and outcomes run to quiescence.

A simulated clock drives the pure core like the scheduler shell would (events → tick → plan), a
mirror of the database applies every transition (checking its ``from_status``), and invariants
are checked at every step and at the end.
"""

from __future__ import annotations

import heapq
import itertools
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.enums import JobStatus, Outcome
from scheduler.core import Scheduler
from scheduler.values import JobSpec, Transition

S = JobStatus
OUTCOMES = [
    Outcome.SUCCEEDED,
    Outcome.SUCCEEDED,
    Outcome.SUCCEEDED,
    Outcome.FAILED,
    Outcome.FAILED_PERMANENTLY,
    Outcome.TIMED_OUT,
    Outcome.RETRY_REQUESTED,
    Outcome.CANCELLED,
]
MAX_STEPS = 5000


@dataclass
class Job:
    spec: JobSpec
    parents: set[int]
    status: JobStatus = S.PENDING
    attempts: int = 0
    reason: str | None = None


@dataclass
class World:
    jobs: dict[int, Job]
    workers: dict[str, tuple[int, int]]
    outcomes: list[Outcome]
    durations: list[float]
    cancels: list[tuple[float, int]]
    offline: list[tuple[float, str]]
    reserve_after: float
    lookahead: int
    by_id: dict[uuid.UUID, int] = field(default_factory=dict)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    workers = {
        f"w{i}": (draw(st.integers(1, 8)), draw(st.integers(1, 8)) * 512)
        for i in range(draw(st.integers(1, 3)))
    }
    sizes = list(workers.values())
    jobs: dict[int, Job] = {}
    for i in range(draw(st.integers(1, 14))):
        parents = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        cap_cpu, cap_mem = draw(st.sampled_from(sizes))
        spec = JobSpec(
            id=uuid.UUID(int=i + 1),
            name=f"j{i}",
            priority=draw(st.integers(0, 10)),
            cpu_units=draw(st.integers(1, cap_cpu)),
            memory_mb=draw(st.integers(1, cap_mem)),
            max_attempts=draw(st.integers(1, 3)),
            initial_delay_seconds=draw(st.sampled_from([0.0, 0.5, 1.0])),
            backoff_multiplier=2.0,
            run_at=draw(st.sampled_from([None, None, None, 2.0])),
            created_at=float(i),
            depends_on=tuple(uuid.UUID(int=p + 1) for p in parents),
        )
        jobs[i] = Job(spec, parents)
    n = len(jobs)
    return World(
        jobs=jobs,
        workers=workers,
        outcomes=draw(st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=30)),
        durations=draw(st.lists(st.sampled_from([0.1, 0.5, 1.0, 3.0]), min_size=1, max_size=10)),
        cancels=draw(st.lists(st.tuples(st.floats(0, 6), st.integers(0, n - 1)), max_size=2)),
        offline=draw(
            st.lists(st.tuples(st.floats(0, 6), st.sampled_from(list(workers))), max_size=2)
        ),
        reserve_after=draw(st.sampled_from([0.0, 1.0, float("inf")])),
        lookahead=draw(st.sampled_from([1, 3, 256])),
    )


class Sim:
    def __init__(self, world: World) -> None:
        self.w = world
        self.sched = Scheduler(reserve_after=world.reserve_after, lookahead=world.lookahead)
        self.events: list[tuple[float, int, str, Any]] = []
        self.seq = itertools.count()
        self.draws = itertools.count()
        for job_number, job in world.jobs.items():
            world.by_id[job.spec.id] = job_number

    def at(self, time: float, kind: str, payload: Any) -> None:
        heapq.heappush(self.events, (time, next(self.seq), kind, payload))

    def apply(self, transitions: list[Transition] | tuple[Transition, ...]) -> None:
        for t in transitions:
            job = self.w.jobs[self.w.by_id[t.job_id]]
            assert job.status is t.from_status, (t, job.status)
            assert t.attempts == job.attempts
            job.status, job.reason = t.to_status, t.reason

    def start(self, now: float) -> None:
        for p in self.sched.plan(now):
            job = self.w.jobs[self.w.by_id[p.job_id]]
            assert job.status is S.READY
            assert all(self.w.jobs[q].status is S.COMPLETED for q in job.parents)
            assert p.attempt == job.attempts + 1 <= job.spec.max_attempts
            assert (job.spec.run_at or 0.0) <= now
            job.status, job.attempts = S.RUNNING, p.attempt
            k = next(self.draws)
            outcome = self.w.outcomes[k % len(self.w.outcomes)]
            duration = self.w.durations[k % len(self.w.durations)]
            self.at(now + duration, "finish", (p.job_id, p.attempt, outcome))
        for view in self.sched.worker_views():
            assert 0 <= view.cpu_in_use <= view.cpu_units
            assert 0 <= view.memory_in_use <= view.memory_mb

    def handle(self, now: float, kind: str, payload: Any) -> None:
        if kind == "finish":
            job_id, attempt, outcome = payload
            released = outcome is not Outcome.TIMED_OUT
            self.apply(
                self.sched.on_attempt_finished(
                    job_id,
                    attempt,
                    outcome,
                    now,
                    retry_after=0.7,
                    error="boom",
                    released=released,
                )
            )
            if not released:
                self.at(now + 0.5, "release", (job_id, attempt))
        elif kind == "release":
            self.sched.release(*payload)
        elif kind == "cancel":
            result = self.sched.cancel(self.w.jobs[payload].spec.id, now)
            self.apply(result.transitions)
            if result.send is not None:
                self.at(
                    now + 0.05,
                    "finish",
                    (result.send.job_id, result.send.attempt, Outcome.CANCELLED),
                )
        elif kind == "offline":
            self.apply(self.sched.worker_offline(payload, now))
            self.at(now + 1.0, "online", payload)
        elif kind == "online":
            self.sched.upsert_worker(payload, *self.w.workers[payload])

    def run(self) -> None:
        for name, (cpu, mem) in self.w.workers.items():
            self.sched.upsert_worker(name, cpu, mem)
        specs = [job.spec for job in self.w.jobs.values()]
        self.apply(self.sched.add_jobs(reversed(specs), 0.0))
        for time, job_number in self.w.cancels:
            self.at(time, "cancel", job_number)
        for time, name in self.w.offline:
            self.at(time, "offline", name)
        now = 0.0
        for _ in range(MAX_STEPS):
            self.apply(self.sched.tick(now))
            self.start(now)
            wake = self.sched.next_wakeup()
            times = [t for t in (wake, self.events[0][0] if self.events else None) if t is not None]
            if not times:
                return
            now = max(now, min(times))
            while self.events and self.events[0][0] <= now:
                _, _, kind, payload = heapq.heappop(self.events)
                self.handle(now, kind, payload)
        raise AssertionError("no quiescence")


def _ancestors(world: World, number: int) -> set[int]:
    seen: set[int] = set()
    stack = list(world.jobs[number].parents)
    while stack:
        p = stack.pop()
        if p not in seen:
            seen.add(p)
            stack.extend(world.jobs[p].parents)
    return seen


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_random_dags_run_to_quiescence(world: World) -> None:
    sim = Sim(world)
    sim.run()
    assert sim.sched.state.jobs == {}
    for view in sim.sched.worker_views():
        assert (view.cpu_in_use, view.memory_in_use) == (0, 0)
    for number, job in world.jobs.items():
        assert job.status.is_final, (number, job.status)
        assert job.attempts <= job.spec.max_attempts
        if job.status is S.COMPLETED:
            assert all(world.jobs[p].status is S.COMPLETED for p in job.parents)
        if job.status is S.CANCELLED and job.reason != "cancelled by user":
            match = re.match(r"upstream job j(\d+) \(", job.reason or "")
            assert match, job.reason
            upstream = int(match.group(1))
            assert upstream in _ancestors(world, number)
            assert world.jobs[upstream].status in (S.FAILED, S.CANCELLED)
