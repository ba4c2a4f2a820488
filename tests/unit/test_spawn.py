"""The worker's side of jobs that spawn jobs (:mod:`worker.spawn`): ids derived from the parent
and the key (the same in every attempt), defaults from the job type then smartq's, bad options
refused in the job, a batch sent once and only when its block ends well, dependencies only on
siblings, and a continuation waiting for every child so far."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from models.messages import JobsSpawned
from smartq.registry import JobType, Registry
from worker.spawn import CONTINUATION_KEY, Spawner, child_id

PARENT = uuid.UUID("00000000-0000-4000-8000-000000000001")


def _types() -> Registry:
    types = Registry()
    types.register(
        JobType(
            name="resize",
            func=lambda ctx: None,
            is_async=False,
            cpu_units=2,
            memory_mb=900,
            max_attempts=7,
            timeout_seconds=30.0,
            resources={"gpu": 1},
        )
    )
    return types


def _spawner(attempt: int = 1) -> tuple[Spawner, list[JobsSpawned]]:
    sent: list[JobsSpawned] = []
    return Spawner(PARENT, attempt, "w1", sent.append, _types()), sent


def test_a_retry_asking_the_same_names_the_same_ids() -> None:
    first, sent1 = _spawner(attempt=1)
    second, sent2 = _spawner(attempt=2)
    ids1 = [first.submit("resize", {"i": i}).id for i in range(3)] + [first.submit("x").id]
    ids2 = [second.submit("resize", {"i": i}).id for i in range(3)] + [second.submit("x").id]
    assert ids1 == ids2 and len(set(ids1)) == 4
    assert ids1[0] == child_id(PARENT, "resize-1") and ids1[3] == child_id(PARENT, "x-1")
    assert [d.attempt for d in sent1 + sent2] == [1] * 4 + [2] * 4
    named = first.submit("resize", key="thumb")
    assert named.id == child_id(PARENT, "thumb") != child_id(uuid.uuid4(), "thumb")


def test_defaults_come_from_the_type_then_from_smartq() -> None:
    spawner, sent = _spawner()
    spawner.submit("resize")
    spawner.submit("other", cpu_units=3, retry=2, priority="high", name="named")
    declared, plain = sent[0].jobs[0], sent[1].jobs[0]
    assert (declared.cpu_units, declared.memory_mb, declared.max_attempts) == (2, 900, 7)
    assert declared.timeout_seconds == 30.0 and declared.resources == {"gpu": 1}
    assert declared.priority == 5 and declared.name == "resize-1"
    assert (plain.cpu_units, plain.memory_mb, plain.max_attempts) == (3, 256, 2)
    assert plain.priority == 8 and plain.name == "named" and plain.resources is None
    assert plain.initial_delay_seconds == 1.0 and plain.backoff_multiplier == 2.0


@pytest.mark.parametrize(
    "options",
    [
        {"cpu_units": 0},
        {"memory_mb": -1},
        {"priority": "urgent"},
        {"priority": 11},
        {"priority": True},
        {"retry": {"max_attempts": 0}},
        {"retry": {"tries": 3}},
        {"timeout_seconds": 0},
        {"run_at": datetime(2030, 1, 1)},  # no time zone
        {"resources": {"GPU!": 1}},
        {"colour": "red"},
    ],
)
def test_bad_options_are_refused_in_the_job_and_nothing_is_sent(options: dict[str, object]) -> None:
    spawner, sent = _spawner()
    with pytest.raises((ValueError, TypeError, ValidationError)):
        spawner.submit("resize", **options)
    assert sent == [] and spawner.children == []
    spawner.submit("resize", run_at=datetime(2030, 1, 1, tzinfo=UTC))
    assert len(sent) == 1


def test_a_payload_must_be_json() -> None:
    spawner, sent = _spawner()
    with pytest.raises(ValueError, match="JSON"):
        spawner.submit("resize", {"when": object()})
    with pytest.raises(ValueError, match="NaN"):
        spawner.submit("resize", {"ratio": float("nan")})
    assert sent == []


def test_dependencies_are_siblings_only_and_keys_are_not_reused() -> None:
    spawner, _ = _spawner()
    a = spawner.submit("resize", key="a")
    spawner.submit("resize", key="b", depends_on=[a])
    with pytest.raises(ValueError, match="siblings"):
        spawner.submit("resize", depends_on=[uuid.uuid4()])
    with pytest.raises(ValueError, match="already used"):
        spawner.submit("resize", key="a")


def test_a_batch_is_sent_once_when_its_block_ends_well() -> None:
    spawner, sent = _spawner()
    with pytest.raises(RuntimeError), spawner.batch() as broken:
        broken.add("resize", key="lost")
        raise RuntimeError("the job failed while building it")
    assert sent == []
    with spawner.batch() as b:
        first = b.add("resize", key="first")
        second = b.add("resize", key="second", after=[first])
        assert sent == []
    assert len(sent) == 1 and [j.key for j in sent[0].jobs] == ["first", "second"]
    assert sent[0].jobs[1].depends_on == [first.id]
    assert [c.id for c in spawner.children] == [first.id, second.id]
    with pytest.raises(RuntimeError):
        b.add("resize")
    assert child_id(PARENT, "lost") not in {c.id for c in spawner.children}


def test_a_continuation_waits_for_every_child_so_far() -> None:
    spawner, sent = _spawner()
    with pytest.raises(ValueError, match="children"):
        spawner.continue_with("merge")
    kids = [spawner.submit("resize").id for _ in range(3)]
    then = spawner.continue_with("merge", {"n": 3})
    assert then.key == CONTINUATION_KEY and sent[-1].jobs[0].depends_on == kids
    only = spawner.continue_with("merge", key="after-first", after=[kids[0]])
    assert sent[-1].jobs[0].depends_on == [kids[0]] and only.id != then.id
