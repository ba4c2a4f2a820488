"""Critical-path order: a job's upward rank (pure).

A job's **upward rank** is its predicted run time plus the largest upward rank among the jobs
waiting on it: the predicted time from its start to the end of its DAG if nothing waited for
capacity (HEFT's rank_u, Topcuoglu et al. 2002). A lone job's rank is its own predicted run.

The ready queue orders jobs of one priority by ``created_at - rank``: a job that has a longer
path behind it counts as submitted that much earlier. For jobs submitted together (a DAG,
a batch) that is rank order, so the critical path goes first; between jobs submitted at
different times no job is overtaken by one submitted more than the longest rank later, so
a stream of long DAGs cannot starve older short jobs. (A strict (rank, age) order could: new
long work would always go first.)

Ranks are computed once, when the jobs are taken in, from the predictions of that moment; a
job's dependents that come in a later call raise nothing upstream (a DAG comes whole, in one
submission).
"""

from __future__ import annotations

import uuid

from scheduler.state import WAITING, JobRecord, SchedulerState


def assign(state: SchedulerState, fresh: list[JobRecord]) -> None:
    """Set the upward rank of each job of ``fresh`` (just taken in, dependents wired)."""
    new = {job.id for job in fresh}
    done: set[uuid.UUID] = set()
    for root in fresh:
        if root.id in done:
            continue
        stack: list[tuple[JobRecord, bool]] = [(root, False)]
        while stack:  # post-order without recursion: chains are thousands long
            job, expanded = stack.pop()
            if job.id in done:
                continue
            children = [
                child
                for child_id in state.dependents.get(job.id, ())
                if (child := state.jobs.get(child_id)) is not None and child.status in WAITING
            ]
            if not expanded:
                stack.append((job, True))
                stack.extend((c, False) for c in children if c.id in new and c.id not in done)
                continue
            job.rank = state.predict(job) + max((c.rank for c in children), default=0.0)
            done.add(job.id)
