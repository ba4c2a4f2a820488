"""The RabbitMQ users of ``deploy/rabbitmq/definitions.json`` are enough for each process, and
no more.

The module imports the file's users and permissions into the real RabbitMQ with ``rabbitmqctl
import_definitions`` (what a node does with it at boot), into a vhost of this run and under
user names of this run, with passwords of its own; all deleted afterwards. Then each role runs
what its process runs (smartq's broker class, ``declare_shared_queues``, the topology's queues
and routing keys) as its own user, and tries things its process never does, which RabbitMQ
must refuse. One worker user serves every worker, so a worker's queue is not closed to another
worker: that is not tested.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiormq
import pytest
import yaml

from smartq import topology
from smartq.broker import Broker, BrokerError, declare_shared_queues
from smartq.brokers.rabbitmq import RabbitMQBroker
from smartq.topology import QueueSpec
from tests.integration.test_broker import Inbox
from tests.services import CI, RABBITMQ_URL, require_rabbitmq, unavailable

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
ROLES = ("api", "scheduler", "worker", "logger")
PLACEHOLDER = re.compile(r"^\$\{(SMARTQ_RABBITMQ_[A-Z0-9_]+?)(:-)?\}$")


def definitions() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DEFINITIONS.read_text())
    return data


def user_of(role: str) -> str:
    return f"smartq-{role}"


# --- what compose.yaml and the definitions promise, read from the files ---------------------


def test_compose_connects_each_process_as_its_own_user() -> None:
    defs = definitions()
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    (vhost,) = (v["name"] for v in defs["vhosts"])
    password_of = {u["name"]: _variable(u["password"]) for u in defs["users"]}
    for role in ROLES:
        url = urlsplit(services[role]["environment"]["SMARTQ_BROKER_URL"])
        assert url.username == user_of(role), role
        assert url.path == f"/{vhost}", role
        assert _variable(url.password or "") == password_of[user_of(role)], role
    rabbit_env = services["rabbitmq"]["environment"]
    assert not any(name.startswith("RABBITMQ_DEFAULT_") for name in rabbit_env)
    env_example = (ROOT / ".env.example").read_text()
    for variable in password_of.values():
        assert _variable(rabbit_env[variable]) == variable
        assert re.search(rf"^{variable}=", env_example, re.MULTILINE), variable


def test_no_process_user_is_guest_or_all_powerful() -> None:
    defs = definitions()
    users = {u["name"]: u for u in defs["users"]}
    assert "guest" not in users
    for role in ROLES:
        assert users[user_of(role)]["tags"] == [], role
        (perms,) = (p for p in defs["permissions"] if p["user"] == user_of(role))
        assert ".*" not in (perms["configure"], perms["write"], perms["read"]), role
        # Topic permissions narrow the routing keys it may publish and bind, on smartq's exchange.
        topics = [t["exchange"] for t in defs["topic_permissions"] if t["user"] == user_of(role)]
        assert topics == [topology.EXCHANGE], role


def _variable(placeholder: str) -> str:
    match = PLACEHOLDER.match(placeholder)
    assert match, f"{placeholder!r} is not a ${{SMARTQ_RABBITMQ_...}} placeholder"
    return match.group(1)


# --- the definitions in a vhost of this run --------------------------------------------------


@dataclass(frozen=True)
class Vhost:
    name: str
    passwords: dict[str, str]  # definitions' user name -> this run's password

    def url(self, role: str) -> str:
        return self.url_of(user_of(role))

    def url_of(self, user: str, vhost: str | None = None) -> str:
        server = urlsplit(RABBITMQ_URL)
        where = quote(self.name if vhost is None else vhost, safe="")
        return (
            f"amqp://{self.name}-{user}:{self.passwords[user]}"
            f"@{server.hostname or '127.0.0.1'}:{server.port or 5672}/{where}"
        )


@pytest.fixture(scope="module")
def vhost() -> Iterator[Vhost]:
    require_rabbitmq()
    if shutil.which("rabbitmqctl") is None:
        if CI:
            unavailable("rabbitmqctl", "PATH")
        pytest.skip("rabbitmqctl is not on PATH")
    run = f"smartq-test-{uuid.uuid4().hex[:10]}"
    defs = definitions()
    passwords = {u["name"]: secrets.token_hex(16) for u in defs["users"]}
    users = [f"{run}-{name}" for name in passwords]
    try:
        rabbitmqctl("import_definitions", "--format", "json", stdin=_for_run(defs, run, passwords))
        _until_imported(run, defs)
        yield Vhost(run, passwords)
    finally:
        rabbitmqctl("delete_vhost", run, check=False)
        for user in users:
            rabbitmqctl("delete_user", user, check=False)


def _for_run(defs: dict[str, Any], run: str, passwords: dict[str, str]) -> str:
    """The file's vhost, users and permissions, with this run's names and passwords."""
    (vhost,) = defs["vhosts"]
    renamed = {
        "vhosts": [{**vhost, "name": run}],
        "users": [
            {**u, "name": f"{run}-{u['name']}", "password": passwords[u["name"]]}
            for u in defs["users"]
        ],
    }
    for key in ("permissions", "topic_permissions"):
        renamed[key] = [{**p, "user": f"{run}-{p['user']}", "vhost": run} for p in defs[key]]
    for key in ("exchanges", "queues", "bindings"):
        renamed[key] = [{**item, "vhost": run} for item in defs[key]]
    return json.dumps(renamed)


def _until_imported(run: str, defs: dict[str, Any], timeout: float = 30.0) -> None:
    """``import_definitions`` returns before the import is done."""
    deadline = time.monotonic() + timeout
    while True:
        listed = [
            rabbitmqctl(command, "-q", "--no-table-headers", "-p", run, check=False)
            for command in ("list_permissions", "list_topic_permissions")
        ]
        listed.append(rabbitmqctl("list_queues", "-q", "--no-table-headers", "-p", run, "name"))
        counts = [len(text.splitlines()) for text in listed]
        wanted = [len(defs["permissions"]), len(defs["topic_permissions"]), len(defs["queues"])]
        if counts == wanted:
            return
        assert time.monotonic() < deadline, f"definitions not imported in {timeout}s: {listed}"
        time.sleep(0.2)


def rabbitmqctl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run(
        ["rabbitmqctl", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
        timeout=60,
    )
    if check:
        assert done.returncode == 0, f"rabbitmqctl {args[0]}: {done.stderr}"
    return done.stdout


@contextlib.asynccontextmanager
async def connected(
    url: str, name: str, exchange: str = topology.EXCHANGE
) -> AsyncIterator[Broker]:
    broker = RabbitMQBroker(url, exchange=exchange, connection_name=name, reconnect_interval=0.2)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.close()


def access_refused(exc: BaseException | None) -> bool:
    """Whether RabbitMQ's ACCESS_REFUSED is behind ``exc`` (smartq wraps it in BrokerError)."""
    while exc is not None:
        if isinstance(exc, aiormq.exceptions.ChannelAccessRefused):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


# --- what each process does, it may do ------------------------------------------------------


@pytest.mark.rabbitmq
async def test_each_process_sets_up_publishes_and_consumes_as_its_own_user(vhost: Vhost) -> None:
    job, worker_id = uuid.uuid4(), f"w-{uuid.uuid4().hex[:6]}"
    inboxes = {role: Inbox() for role in ROLES}
    async with contextlib.AsyncExitStack() as stack:
        brokers: dict[str, Broker] = {}
        for role in ROLES:  # as smartq.runner and api.app start them
            brokers[role] = await stack.enter_async_context(
                connected(vhost.url(role), f"{vhost.name}-{role}")
            )
            await declare_shared_queues(brokers[role])
        api, scheduler, worker, logger = (brokers[role] for role in ROLES)
        await scheduler.consume(topology.scheduler_queue(), inboxes["scheduler"], prefetch=10_000)
        await logger.consume(topology.logger_queue(), inboxes["logger"], prefetch=100)
        await api.consume(topology.stream_queue(vhost.name), inboxes["api"], prefetch=1_000)
        # A worker replaces its queue when it was declared with other arguments (QueueMismatch).
        await worker.declare(topology.worker_queue(worker_id))
        await worker.delete_queue(topology.worker_queue(worker_id).name)
        queue = topology.worker_queue(worker_id, expires_seconds=600)
        await worker.consume(queue, inboxes["worker"], prefetch=4)

        hints = [topology.JOB_SUBMITTED, topology.JOB_CANCEL_REQUESTED]
        await api.publish_many([(key, b"") for key in hints])
        await api.publish(topology.status_key(job), b"")  # it cancelled a waiting job
        orders = [topology.dispatch_key(worker_id, job), topology.dispatch_batch_key(worker_id)]
        orders.append(topology.cancel_key(worker_id, job))
        await scheduler.publish_many([(key, b"") for key in orders], mandatory=True)
        events = [topology.status_key(job), topology.STATUS_BATCH]
        events += [topology.MONITORING_QUEUE, topology.MONITORING_RESOURCE]
        await scheduler.publish_many([(key, b"") for key in [*events, topology.SCHEDULER_PROBE]])
        reports = [topology.report_key(job), topology.REPORT_BATCH]
        reports.append(topology.heartbeat_key(worker_id))
        lines = [topology.logs_key(job), topology.LOGS_BATCH]
        lines += [topology.progress_key(job), topology.PROGRESS_BATCH]
        await worker.publish_many([(key, b"") for key in [*reports, *lines]])
        await logger.publish(topology.MONITORING_LOGGER, b"")
        await logger.publish(topology.stored_key(worker_id), b"")  # its lines are stored

        expected = {
            "scheduler": [*hints, *reports, topology.SCHEDULER_PROBE],
            "worker": [*orders, topology.stored_key(worker_id)],
            "logger": lines,
            # job.status.<job> twice: from the api and from the scheduler
            "api": [topology.status_key(job), *events, *lines, topology.MONITORING_LOGGER],
        }
        for role, keys in expected.items():
            await inboxes[role].settle(len(keys))
            assert sorted(m.routing_key for m in inboxes[role].messages) == sorted(keys), role


# --- what no process does, its user may not do ----------------------------------------------

JOB = uuid.UUID(int=1)
Action = Callable[[Broker], Awaitable[object]]


async def _ignore(_message: object) -> None:
    return None


def consume(spec: QueueSpec) -> Action:
    return lambda broker: broker.consume(spec, _ignore, prefetch=1)


def publish(routing_key: str) -> Action:
    return lambda broker: broker.publish(routing_key, b"")


def bind(spec: QueueSpec) -> Action:
    return lambda broker: broker.declare(spec)


SCHEDULER_INBOX = consume(topology.scheduler_queue())
LOGGER_QUEUE = consume(topology.logger_queue())
A_WORKER_QUEUE = consume(topology.worker_queue("w1"))
A_STREAM_QUEUE = consume(topology.stream_queue("p1"))
A_DISPATCH = publish(topology.dispatch_key("w1", JOB))
A_STATUS = publish(topology.status_key(JOB))
A_REPORT = publish(topology.report_key(JOB))
A_HEARTBEAT = publish(topology.heartbeat_key("w1"))
A_HINT = publish(topology.JOB_SUBMITTED)
A_LOG_LINE = publish(topology.logs_key(JOB))

REFUSED: dict[str, dict[str, Action]] = {
    "api": {
        "confirm stored log lines": publish(topology.stored_key("w1")),
        "consume the scheduler inbox": SCHEDULER_INBOX,
        "consume a worker queue": A_WORKER_QUEUE,
        "consume the logger queue": LOGGER_QUEUE,
        "publish a dispatch": A_DISPATCH,
        "publish a worker report": A_REPORT,
        "publish a heartbeat": A_HEARTBEAT,
        "publish a log line": A_LOG_LINE,
        "publish progress": publish(topology.progress_key(JOB)),
        "declare (and so delete) the scheduler's queue": bind(topology.scheduler_queue()),
        "bind a queue of its own to worker reports": bind(
            QueueSpec(topology.stream_queue("p1").name, ("job.report.#",), durable=False)
        ),
    },
    "scheduler": {
        "consume a worker queue": A_WORKER_QUEUE,
        "consume the logger queue": LOGGER_QUEUE,
        "consume a stream queue": A_STREAM_QUEUE,
        "publish a worker report": A_REPORT,
        "publish a submission hint": A_HINT,
        "publish a log line": A_LOG_LINE,
        "declare (and so delete) the logger's queue": bind(topology.logger_queue()),
    },
    "worker": {
        "consume the scheduler inbox": SCHEDULER_INBOX,
        "consume the logger queue": LOGGER_QUEUE,
        "consume a stream queue": A_STREAM_QUEUE,
        "publish a dispatch": A_DISPATCH,
        "publish a status event": A_STATUS,
        "publish a submission hint": A_HINT,
        "confirm stored log lines": publish(topology.stored_key("w1")),
        "bind its queue to status events": bind(
            QueueSpec(topology.worker_queue("w1").name, ("job.status.#",))
        ),
        "bind its queue to every tenant's log lines": bind(
            QueueSpec(topology.worker_queue("w1").name, ("job.logs.#",))
        ),
        "declare (and so delete) the logger's queue": bind(topology.logger_queue()),
        "declare (and so delete) the scheduler's queue": bind(topology.scheduler_queue()),
    },
    "logger": {
        "consume the scheduler inbox": SCHEDULER_INBOX,
        "consume a worker queue": A_WORKER_QUEUE,
        "consume a stream queue": A_STREAM_QUEUE,
        "publish a dispatch": A_DISPATCH,
        "publish a status event": A_STATUS,
        "publish a worker report": A_REPORT,
        "bind the logger queue to status events": bind(
            QueueSpec(topology.logger_queue().name, ("job.status.#",))
        ),
        "declare (and so delete) the scheduler's queue": bind(topology.scheduler_queue()),
    },
}


@pytest.mark.rabbitmq
@pytest.mark.parametrize(
    ("role", "what"), [(role, what) for role, cases in REFUSED.items() for what in cases]
)
async def test_a_process_user_is_refused(vhost: Vhost, role: str, what: str) -> None:
    async with connected(vhost.url(role), f"{vhost.name}-{role}") as broker:
        with pytest.raises(BrokerError) as caught:
            await REFUSED[role][what](broker)
    assert access_refused(caught.value), caught.value


@pytest.mark.rabbitmq
@pytest.mark.parametrize("role", ROLES)
async def test_a_process_user_cannot_declare_another_exchange(vhost: Vhost, role: str) -> None:
    with pytest.raises(BrokerError) as caught:
        async with connected(vhost.url(role), f"{vhost.name}-{role}", exchange="other"):
            pass
    assert access_refused(caught.value), caught.value


@pytest.mark.rabbitmq
@pytest.mark.parametrize("role", ROLES)
async def test_a_process_user_cannot_open_another_vhost(vhost: Vhost, role: str) -> None:
    async with connected(vhost.url(role), f"{vhost.name}-{role}"):
        pass  # the same credentials open this run's vhost; RabbitMQ refuses only "/"
    with pytest.raises(BrokerError, match=r"Connection\.Close"):
        async with connected(vhost.url_of(user_of(role), vhost="/"), f"{vhost.name}-{role}"):
            pass
