"""models.storable: what PostgreSQL and orjson cannot hold is replaced, everything else kept."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

import orjson

from models import storable
from models.enums import Outcome
from models.messages import AttemptFinished, LogLine


def test_json_values_become_storable_and_plain_ones_stay() -> None:
    plain = {"a": [1, 2.5, True, None, "x"], "n": -(2**63), "m": 2**63 - 1}
    assert storable.json_value(plain) == plain
    odd = {"k\x00": ["v\x00", 2**64, -(2**70), math.nan, math.inf, (1, 2)]}
    assert storable.json_value(odd) == {
        "k\ufffd": ["v\ufffd", str(2**64), str(-(2**70)), None, None, [1, 2]]
    }
    orjson.dumps(storable.json_value(odd))  # and orjson takes it


def test_messages_scrub_what_user_code_produced() -> None:
    now = datetime.now(UTC)
    finished = AttemptFinished(
        job_id=uuid.uuid4(),
        attempt=1,
        worker_id="w",
        outcome=Outcome.FAILED,
        started_at=now,
        finished_at=now,
        result={"r": "\x00"},
        error="e\x00",
    )
    again = AttemptFinished.model_validate_json(finished.dumps())
    assert (again.result, again.error) == ({"r": "\ufffd"}, "e\ufffd")
    line = LogLine(job_id=uuid.uuid4(), attempt=1, seq=1, level="info", message="\x00", ts=now)
    assert line.message == "\ufffd"
