"""The workers one placement pass may use, indexed for best fit.

**Fit rule — best fit.** Among the workers where the job fits now (cpu and memory), take the one
left with the least room afterwards, scored as
``(cpu_free - cpu) / C + (mem_free - mem) / M`` where ``C`` and ``M`` are the largest accepting
worker's cpu_units and memory_mb (ties: lowest worker id). Dividing by cluster-wide constants
compares absolute leftovers across workers of different sizes and weighs the two resources
equally. Filling the tightest hole first keeps large holes intact for large jobs; worst fit
(most room left) would spread small jobs over every worker and leave no room for a big one.
"""

from __future__ import annotations

import bisect

from scheduler import backfill
from scheduler.backfill import Shadow
from scheduler.state import JobRecord, SchedulerState
from scheduler.workers import WorkerRecord


class Pool:
    """Accepting workers, those open to backfill (not reserved), and an index for best fit.

    ``buckets`` maps a free cpu_units count to the open workers with that much cpu free (and at
    least one free megabyte), sorted by free memory: best fit bisects each bucket for the
    tightest memory fit, tightest cpu first, and stops as soon as the cpu leftover alone exceeds
    the best score: O(distinct free-cpu values * log workers) per job.
    """

    def __init__(self, state: SchedulerState) -> None:
        self.accepting = sorted(
            (w for w in state.workers.values() if w.accepting), key=lambda w: w.id
        )
        self.open = [w for w in self.accepting if w.reserved_for is None]
        big_cpu = max((w.cpu_total for w in self.accepting), default=1)
        big_mem = max((w.mem_total for w in self.accepting), default=1)
        self.inv_cpu, self.inv_mem = 1.0 / big_cpu, 1.0 / big_mem
        #: One worker is the largest in both resources: "fits some worker" is then two compares.
        self._dominant: tuple[int, int] | None = None
        if any(w.cpu_total == big_cpu and w.mem_total == big_mem for w in self.accepting):
            self._dominant = (big_cpu, big_mem)
        self._fits_total: dict[tuple[str, int, int], bool] = {}
        #: Per job type: does every accepting worker offer it (so the index serves it)?
        self._everywhere: dict[str, bool] = {}
        self._typed = any(w.types is not None for w in self.accepting)
        self.buckets: dict[int, list[tuple[int, str, WorkerRecord]]] = {}
        for worker in self.open:
            self._index(worker)
        self.max_cpu_free = 0
        self.max_mem_free = 0
        self.refresh()
        #: Reserved workers open to backfill in this pass, by worker id.
        self.shadows: dict[str, Shadow] = {}

    def _index(self, worker: WorkerRecord) -> None:
        if worker.cpu_free >= 1 and worker.mem_free >= 1:
            bucket = self.buckets.setdefault(worker.cpu_free, [])
            bisect.insort(bucket, (worker.mem_free, worker.id, worker))

    def _unindex(self, worker: WorkerRecord, cpu_free: int, mem_free: int) -> None:
        bucket = self.buckets.get(cpu_free)
        if bucket is None:
            return
        at = bisect.bisect_left(bucket, (mem_free, worker.id))
        if at < len(bucket) and bucket[at][2] is worker:
            del bucket[at]
            if not bucket:
                del self.buckets[cpu_free]

    def refresh(self) -> None:
        self.max_cpu_free = max(self.buckets, default=0)
        self.max_mem_free = max((bucket[-1][0] for bucket in self.buckets.values()), default=0)

    def taken(self, worker: WorkerRecord, job: JobRecord) -> None:
        """``worker`` just took ``job``: move it in the index, update the maxima if needed."""
        cpu_before = worker.cpu_free + job.cpu
        mem_before = worker.mem_free + job.mem
        self._unindex(worker, cpu_before, mem_before)
        self._index(worker)
        if cpu_before >= self.max_cpu_free or mem_before >= self.max_mem_free:
            self.refresh()

    def has_room(self) -> bool:
        return (self.max_cpu_free >= 1 and self.max_mem_free >= 1) or any(
            s.worker.cpu_free >= 1 and s.worker.mem_free >= 1 for s in self.shadows.values()
        )

    def everywhere(self, job_type: str) -> bool:
        """Does every accepting worker run ``job_type``?"""
        if not self._typed:
            return True
        known = self._everywhere.get(job_type)
        if known is None:
            known = all(w.offers(job_type) for w in self.accepting)
            self._everywhere[job_type] = known
        return known

    def fits_total(self, job: JobRecord) -> bool:
        """Could some accepting worker that runs the job's type hold ``job`` when empty?"""
        if job.resources or job.labels:
            return any(w.could_hold(job) for w in self.accepting)
        anywhere = self.everywhere(job.type)
        if anywhere and self._dominant is not None:
            return job.cpu <= self._dominant[0] and job.mem <= self._dominant[1]
        key = (job.type if not anywhere else "", job.cpu, job.mem)
        known = self._fits_total.get(key)
        if known is None:
            known = any(
                w.cpu_total >= job.cpu and w.mem_total >= job.mem and w.offers(job.type)
                for w in self.accepting
            )
            self._fits_total[key] = known
        return known

    def best_fit(self, job: JobRecord) -> WorkerRecord | None:
        """The open worker left with the least room after taking ``job`` (see module doc)."""
        if job.cpu > self.max_cpu_free or job.mem > self.max_mem_free:
            return None
        if job.resources or job.labels or not self.everywhere(job.type):
            return self._best_fit_offering(job)
        best: WorkerRecord | None = None
        best_score = float("inf")
        wanted = (job.mem, "")
        for cpu_free in range(job.cpu, self.max_cpu_free + 1):
            cpu_score = (cpu_free - job.cpu) * self.inv_cpu
            if cpu_score > best_score:
                break
            bucket = self.buckets.get(cpu_free)
            if not bucket:
                continue
            at = bisect.bisect_left(bucket, wanted)
            if at == len(bucket):
                continue
            mem_free, worker_id, worker = bucket[at]
            score = cpu_score + (mem_free - job.mem) * self.inv_mem
            if score < best_score or (
                score == best_score and best is not None and worker_id < best.id
            ):
                best, best_score = worker, score
        return best

    def _best_fit_offering(self, job: JobRecord) -> WorkerRecord | None:
        """Best fit among the open workers that run the job's type (not all do)."""
        best: WorkerRecord | None = None
        best_score = float("inf")
        for worker in self.open:  # in id order: the lowest id wins a tie
            if not worker.fits_now(job):
                continue
            score = (worker.cpu_free - job.cpu) * self.inv_cpu + (
                worker.mem_free - job.mem
            ) * self.inv_mem
            if score < best_score:
                best, best_score = worker, score
        return best

    def soonest(
        self, state: SchedulerState, job: JobRecord, now: float, predicted: bool
    ) -> WorkerRecord | None:
        """The open worker, big enough in total, where ``job`` is predicted to fit first
        (``predicted``: by the predicted ends of what runs there) or missing the least room
        now."""
        candidates = [w for w in self.open if w.could_hold(job)]
        if not candidates:
            return None

        def key(w: WorkerRecord) -> tuple[float, float, str]:
            missing = (
                max(job.cpu - w.cpu_free, 0) * self.inv_cpu
                + max(job.mem - w.mem_free, 0) * self.inv_mem
            )
            in_use = w.cpu_used * self.inv_cpu + w.mem_used * self.inv_mem
            return (missing, -in_use, w.id)

        if predicted:
            far = float("inf")

            def when(w: WorkerRecord) -> tuple[float, tuple[float, float, str]]:
                found = backfill.shadow_time(state, w, job, now)
                return (found[0] if found is not None else far, key(w))

            return min(candidates, key=when)
        return min(candidates, key=key)

    def close(self, worker: WorkerRecord) -> None:
        """``worker`` was reserved: no backfill on it any more in this pass."""
        self.open.remove(worker)
        self._unindex(worker, worker.cpu_free, worker.mem_free)
        self.refresh()

    def reopen(self, worker: WorkerRecord) -> None:
        self.open.append(worker)
        self.open.sort(key=lambda w: w.id)
        self._index(worker)
        self.refresh()
