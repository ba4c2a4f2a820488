"""Batch callbacks through the SDK and the CLI, against the API served on a loopback port with
a scheduler and a worker (PostgreSQL + RabbitMQ and embedded): an admin sets the tenant's
secret (``set_callback_secret``, ``smartq tenants set --callback-secret -``), ``client.batch(
callbacks=...)`` is delivered signed with THAT secret, ``batch.deliveries()`` and
``smartq batches deliveries`` show the log, and ``smartq submit -f --callback`` asks for one."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import smartq
from smartq import callbacks, keystore
from tests.e2e.procs import ROOT, free_port
from tests.integration.test_sdk import serve_app
from tests.receiver import Receiver, receiving
from tests.system import System, until

pytestmark = pytest.mark.slow
TENANT_SECRET = "the-tenant-default-own-secret"
QUICK = {
    "callback_poll_seconds": 0.1,
    "callback_secret": "the-server-default-secret",
    "callback_allowed_hosts": ["127.0.0.1"],
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


@pytest.fixture
async def url(system: System) -> AsyncIterator[str]:
    system.start_scheduler()
    system.start_worker("w1")
    port = free_port()
    server, task = await serve_app(system.app, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def cli(url: str, key: str, *args: str, stdin: str = "") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "smartq.cli",
        *args,
        "--url",
        url,
        "--api-key",
        key,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode())
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.system_settings(**QUICK)
async def test_sdk_and_cli_ask_for_callbacks_and_read_the_log(
    system: System, url: str, receiver: Receiver, tmp_path: Path
) -> None:
    async with system.engine.connect() as conn:
        admin_key = (await keystore.create_key(conn, tenant="ops", scopes=(), admin=True)).key
    code, out, err = await cli(
        url, admin_key, "tenants", "set", "default", "--callback-secret", "-", stdin=TENANT_SECRET
    )
    assert code == 0, err
    assert "callback secret  set" in out and TENANT_SECRET not in out
    async with smartq.AsyncClient(url, admin_key) as admin:
        assert (await admin.tenant("default"))["callback_secret_set"] is True

    hook = {"url": receiver.url("/sdk"), "events": ["batch.finished"]}
    async with smartq.AsyncClient(url, system.key) as client:
        async with client.batch("hooked", callbacks=[hook]) as batch:
            batch.add("noop")
        await batch.wait(timeout=30)

        async def delivered() -> dict[str, Any] | None:
            log = await batch.deliveries()
            return log if [d["status"] for d in log["items"]] == ["delivered"] else None

        log: dict[str, Any] = await until(delivered, timeout=30)
    assert log["callbacks"][0]["url"] == hook["url"]
    [got] = receiver.events("/sdk")
    assert callbacks.verify(TENANT_SECRET, got.headers[callbacks.SIGNATURE_HEADER], got.body)
    with pytest.raises(callbacks.InvalidSignature):  # not the server's default
        callbacks.verify(
            QUICK["callback_secret"], got.headers[callbacks.SIGNATURE_HEADER], got.body
        )

    code, out, err = await cli(
        url, system.key, "batches", "deliveries", str(batch.id), "-o", "json"
    )
    assert code == 0, err
    assert [(d["event"], d["status"], d["attempts"]) for d in json.loads(out)] == [
        ("batch.finished", "delivered", 1)
    ]
    code, out, err = await cli(url, system.key, "batches", "deliveries", str(batch.id))
    assert code == 0, err
    assert "batch.finished" in out and "delivered" in out and "200" in out

    dag = tmp_path / "dag.json"
    dag.write_text(json.dumps({"jobs": [{"key": "a", "type": "noop"}]}))
    hook_url = receiver.url("/cli")
    args = ["submit", "-f", str(dag), "--callback", hook_url, "--callback-events", "batch.started"]
    code, out, err = await cli(url, system.key, *args, "-o", "json")
    assert code == 0, err
    batch_id = json.loads(out)["batch_id"]
    shown = (await system.client.get(f"/batches/{batch_id}/deliveries")).json()
    assert [(c["url"], c["events"]) for c in shown["callbacks"]] == [(hook_url, ["batch.started"])]
    code, _, err = await cli(url, system.key, *args[:5], "--callback-events", "batch.exploded")
    assert code == 2 and "batch.exploded" in err

    # The file may ask for callbacks itself; a --callback adds to them.
    file_url = receiver.url("/file")
    dag.write_text(
        json.dumps(
            {
                "callbacks": [{"url": file_url, "events": ["batch.finished"]}],
                "jobs": [{"key": "a", "type": "noop"}],
            }
        )
    )
    code, out, err = await cli(url, system.key, *args, "-o", "json")
    assert code == 0, err
    batch_id = json.loads(out)["batch_id"]
    shown = (await system.client.get(f"/batches/{batch_id}/deliveries")).json()
    assert sorted((c["url"], c["events"]) for c in shown["callbacks"]) == sorted(
        [(file_url, ["batch.finished"]), (hook_url, ["batch.started"])]
    )
