"""The logger confirms an attempt whose lines all came in the batch it commits without
counting stored lines; the others are left for the count."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from logger.service import complete_in_batch
from models.messages import LogLine

JOB, OTHER = uuid.uuid4(), uuid.uuid4()


def line(job: uuid.UUID, seq: int, attempt: int = 1, last: bool = False) -> LogLine:
    return LogLine(
        job_id=job,
        attempt=attempt,
        seq=seq,
        level="info",
        message=f"line {seq}",
        ts=datetime.now(UTC),
        reply_to="w1" if last else None,
    )


def test_an_attempt_with_all_its_lines_in_the_batch_is_complete() -> None:
    batch = [line(JOB, 1), line(JOB, 2), line(JOB, 3, last=True)]
    done, rest = complete_in_batch([(batch[-1], 9.0)], batch)
    assert done == [batch[-1]] and rest == []


def test_a_missing_line_or_another_attempts_lines_leave_it_to_the_count() -> None:
    gap = [line(JOB, 1), line(JOB, 3, last=True)]  # line 2 came in an earlier batch, or not yet
    other_attempt = [line(OTHER, 1, attempt=1), line(OTHER, 2, attempt=2, last=True)]
    finals = [(gap[-1], 9.0), (other_attempt[-1], 8.0)]
    done, rest = complete_in_batch(finals, gap + other_attempt)
    assert done == [] and rest == finals
