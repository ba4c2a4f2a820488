"""The outbox gathers items from any thread and publishes them in ordered batches, retrying."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence

import pytest

from smartq.outbox import FIRST_DELAY, MAX_DELAY, LoopHandoff, Outbox


class Sink:
    """A publish function that records batches; fails ``fail`` times first."""

    def __init__(self, *, fail: int = 0) -> None:
        self.batches: list[list[int]] = []
        self.calls = 0
        self._fail = fail
        self.published = asyncio.Event()

    async def __call__(self, batch: list[int]) -> None:
        self.calls += 1
        if self.calls <= self._fail:
            raise ConnectionError("broker down")
        self.batches.append(list(batch))
        self.published.set()

    @property
    def items(self) -> list[int]:
        return [i for b in self.batches for i in b]


class Pauses:
    """An injected sleep: records each pause and only yields to the loop."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seen.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
async def started() -> AsyncIterator[list[Outbox[int]]]:
    """Outboxes a test appends are started here and cancelled after it."""
    boxes: list[Outbox[int]] = []
    yield boxes
    for box in boxes:
        box.cancel()


def start(boxes: list[Outbox[int]], box: Outbox[int]) -> Outbox[int]:
    box.start()
    boxes.append(box)
    return box


async def test_without_linger_each_item_goes_at_once(started: list[Outbox[int]]) -> None:
    sink = Sink()
    box = start(started, Outbox(sink))
    box.put(1)
    await asyncio.wait_for(box.join(), 1)
    box.put(2)
    await asyncio.wait_for(box.join(), 1)
    assert sink.batches == [[1], [2]]


async def test_linger_gathers_what_comes_within_the_window(started: list[Outbox[int]]) -> None:
    sink = Sink()
    box = start(started, Outbox(sink, linger=0.2))
    loop = asyncio.get_running_loop()
    began = loop.time()
    for i in range(5):
        box.put(i)
        await asyncio.sleep(0.01)
    assert sink.batches == []  # still gathering
    await asyncio.wait_for(box.join(), 2)
    assert sink.batches == [[0, 1, 2, 3, 4]]
    assert loop.time() - began >= 0.2


async def test_hurry_sends_what_is_held_now_and_later_items_linger_again(
    started: list[Outbox[int]],
) -> None:
    """A worker holding a report hurries its log lane: the held lines go at once, and the lane
    keeps gathering afterwards (it had used :meth:`Outbox.flush`, which ended lingering for
    good: every later line went out as a message of its own)."""
    sink = Sink()
    box = start(started, Outbox(sink, linger=30))
    box.put(1)
    box.put(2)
    await asyncio.sleep(0.02)
    box.hurry()
    await asyncio.wait_for(box.join(), 1)
    box.put(3)
    await asyncio.sleep(0.1)
    assert sink.batches == [[1, 2]]  # 3 lingers: the hurry was for what was held
    box.put_all_nowait([4, 5], at_once=True)
    await asyncio.wait_for(box.join(), 1)
    assert sink.batches == [[1, 2], [3, 4, 5]]
    box.hurry()  # nothing held: no effect on what comes next
    box.put(6)
    await asyncio.sleep(0.1)
    assert sink.batches == [[1, 2], [3, 4, 5]]


async def test_a_full_batch_ends_the_wait(started: list[Outbox[int]]) -> None:
    sink = Sink()
    box = start(started, Outbox(sink, linger=30, batch=5))
    for i in range(12):
        box.put(i)
    await asyncio.wait_for(sink.published.wait(), 1)  # not the 30 s window
    assert sink.batches[0] == [0, 1, 2, 3, 4]
    box.flush()
    await asyncio.wait_for(box.join(), 1)
    assert [len(b) for b in sink.batches] == [5, 5, 2]
    assert sink.items == list(range(12))


async def test_flush_sends_what_is_held_at_once_and_lingers_no_more(
    started: list[Outbox[int]],
) -> None:
    sink = Sink()
    box = start(started, Outbox(sink, linger=30))
    box.put(1)
    box.put(2)
    await asyncio.sleep(0.05)
    assert sink.batches == []
    box.flush()
    await asyncio.wait_for(box.join(), 1)
    box.put(3)
    await asyncio.wait_for(box.join(), 1)
    assert sink.batches == [[1, 2], [3]]


async def test_a_failed_publish_is_retried_with_a_doubling_pause(
    started: list[Outbox[int]],
) -> None:
    sink, pauses = Sink(fail=8), Pauses()
    box = start(started, Outbox(sink, retry_on=(ConnectionError,), sleep=pauses))
    box.put(1)
    await asyncio.wait_for(box.join(), 1)
    assert pauses.seen == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert (FIRST_DELAY, MAX_DELAY) == (0.1, 5.0)
    assert sink.batches == [[1]]  # published once, when the broker took it
    box.put(2)
    await asyncio.wait_for(box.join(), 1)
    assert pauses.seen[8:] == []  # a success resets the pause; the next batch went at once


async def test_an_exception_not_retried_ends_the_outbox(started: list[Outbox[int]]) -> None:
    sink = Sink(fail=1)
    box = start(started, Outbox(sink, retry_on=(TimeoutError,)))
    box.put(1)
    task = box._task
    assert task is not None
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(task, 1)


async def test_order_is_kept_and_leftovers_go_before_newer_items(
    started: list[Outbox[int]],
) -> None:
    batches: list[list[int]] = []

    async def take_two_first(batch: list[int]) -> Sequence[int] | None:
        batches.append(batch[:2] if not batches else list(batch))
        if len(batches) == 1:
            for i in range(5, 8):  # newer items arrive while the rest waits to go again
                box.put(i)
            return batch[2:]
        return None

    pauses = Pauses()
    box = start(started, Outbox(take_two_first, sleep=pauses))
    for i in range(5):
        box.put(i)
    await asyncio.wait_for(box.join(), 1)
    assert batches == [[0, 1], [2, 3, 4], [5, 6, 7]]
    assert pauses.seen == [0.1]


async def test_puts_from_threads_reach_the_loop_in_each_threads_order(
    started: list[Outbox[int]],
) -> None:
    sink = Sink()
    box = start(started, Outbox(sink, linger=0.05))

    def producer(base: int) -> None:
        assert threading.current_thread() is not threading.main_thread()
        for i in range(100):
            box.put(base + i)

    await asyncio.gather(*(asyncio.to_thread(producer, base) for base in (0, 1000)))
    await asyncio.sleep(0.01)  # the hand-offs are queued on the loop
    await asyncio.wait_for(box.join(), 2)
    for base in (0, 1000):
        assert [i for i in sink.items if base <= i < base + 1000] == list(range(base, base + 100))


async def test_handoff_runs_on_the_loop_thread_and_resolves_futures() -> None:
    handoff = LoopHandoff()
    seen: list[int | None] = []
    handoff.call(lambda _: seen.append(threading.get_ident()), None)  # unbound: at once
    handoff.bind()
    loop_thread = threading.get_ident()
    done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def elsewhere() -> None:
        handoff.call(lambda _: seen.append(threading.get_ident()), None)
        handoff.resolve(done, "from a thread")

    await asyncio.to_thread(elsewhere)
    assert await asyncio.wait_for(done, 1) == "from a thread"
    assert seen == [loop_thread, loop_thread]
