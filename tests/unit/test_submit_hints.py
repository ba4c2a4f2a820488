"""The API's ``job.submitted`` hints: the first after a quiet spell at once, then gathered."""

from __future__ import annotations

import asyncio
import uuid

import orjson

from api.hints import SubmitHints
from models.messages import JobsSubmitted


async def test_hints_go_at_once_after_a_quiet_spell_then_gathered() -> None:
    sent: list[tuple[float, list[uuid.UUID]]] = []
    loop = asyncio.get_running_loop()

    async def publish(routing_key: str, body: bytes) -> None:
        sent.append((loop.time(), JobsSubmitted.model_validate(orjson.loads(body)).job_ids))

    hints = SubmitHints(publish, linger=0.05)
    hints.start()
    ids = [uuid.uuid4() for _ in range(4)]
    t0 = loop.time()
    hints.add(ids[:1])
    await asyncio.sleep(0.01)
    assert [s[1] for s in sent] == [ids[:1]]  # the first one did not wait
    hints.add(ids[1:2])
    await asyncio.sleep(0)
    hints.add(ids[2:3])
    await asyncio.sleep(0.1)
    assert [s[1] for s in sent] == [ids[:1], ids[1:3]]  # gathered, one linger after the first
    assert sent[1][0] - t0 >= 0.045
    hints.add(ids[3:])
    await hints.stop()  # what is left goes out on stop
    assert [s[1] for s in sent][-1] == ids[3:]
