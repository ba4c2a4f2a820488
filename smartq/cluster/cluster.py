"""``up``, ``down`` and ``status`` of a cluster, and the handle scripts and tests use on a
running one (its database, exchange, APIs, proxy, partitions).

What ``up`` made is written to ``state.json`` in the state directory (pids, ports, the key),
so each command may run in a process of its own; process logs go to ``logs/`` beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from smartq import keystore, migrate
from smartq.cluster import netns, processes
from smartq.cluster.control import ProxyClient
from smartq.cluster.layout import Host, Role, Spec
from smartq.cluster.proxy import Address
from smartq.cluster.toxics import ToxicError
from smartq.db import create_async
from smartq.keys import Scope

ROOT = Path(__file__).resolve().parents[2]
#: The tenant of the key ``up`` makes.
TENANT = "cluster"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class State:
    spec: Spec
    control: str = ""
    api_ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    key: str = ""
    up_seconds: float = 0.0

    def dump(self) -> str:
        spec = asdict(self.spec)
        for name in ("postgres", "rabbitmq"):
            spec[name] = str(getattr(self.spec, name))
        return json.dumps({**asdict(self), "spec": spec}, indent=2)

    @classmethod
    def load(cls, text: str) -> State:
        raw = json.loads(text)
        spec = raw.pop("spec")
        for name in ("postgres", "rabbitmq"):
            spec[name] = Address.parse(spec[name])
        spec["env"] = tuple(tuple(kv) for kv in spec["env"])
        spec["database_url_vars"] = tuple(spec["database_url_vars"])
        return cls(spec=Spec(**spec), **raw)


class ClusterError(RuntimeError):
    """The cluster could not be brought up, or is not up."""


class Cluster:
    """A cluster described by ``spec`` whose state lives in ``state_dir``."""

    def __init__(self, spec: Spec, state_dir: Path) -> None:
        self.spec = spec
        self.dir = state_dir
        self.state = State(spec)
        self._proxy: ProxyClient | None = None

    @classmethod
    def attach(cls, state_dir: Path) -> Cluster:
        """The cluster ``up`` left in ``state_dir``."""
        file = state_dir / "state.json"
        if not file.exists():
            raise ClusterError(f"no cluster state in {state_dir} (run `scripts/cluster up`)")
        state = State.load(file.read_text())
        c = cls(state.spec, state_dir)
        c.state = state
        return c

    # -- what scenarios and the checker use ------------------------------------------------
    @property
    def db_url(self) -> str:
        return self.spec.database_url()

    @property
    def rabbit_url(self) -> str:
        return self.spec.rabbitmq_url()

    @property
    def exchange(self) -> str:
        return self.spec.exchange

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.state.key}"}

    @property
    def logdir(self) -> Path:
        return self.dir / "logs"

    @property
    def proxy(self) -> ProxyClient:
        if self._proxy is None:
            self._proxy = ProxyClient(f"http://{self.state.control}")
        return self._proxy

    def api_base(self, host: str) -> str:
        """The API on ``host`` through its proxy path (``http-<host>``)."""
        return f"http://127.0.0.1:{self.state.api_ports[host]}"

    def apis(self) -> list[str]:
        return [h.name for h in self.spec.hosts() if h.role is Role.API]

    def host(self, name: str) -> Host:
        return self.spec.host(name)

    def partition(self, host: str) -> None:
        netns.set_link(self.host(host), up=False)

    def heal(self, host: str) -> None:
        netns.set_link(self.host(host), up=True)

    def log(self, name: str) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def alive(self, name: str) -> bool:
        pid = self.state.pids.get(name)
        return pid is not None and processes.alive(pid)

    def start(self, host: str) -> None:
        """(Re)start the process of ``host``."""
        h = self.host(host)
        argv = [*netns.exec_prefix(h), sys.executable, "-m", "smartq.cli", *h.argv()]
        env = {**_inherited(), **h.env()}
        self.state.pids[h.name] = processes.start(argv, env, self.logdir / f"{h.name}.log", ROOT)
        self._save()

    # -- up --------------------------------------------------------------------------------
    def up(self, *, timeout: float = 120) -> float:
        """Database, namespaces, proxy, processes; returns the seconds it took."""
        began = time.monotonic()
        if (self.dir / "state.json").exists():
            raise ClusterError(f"a cluster is up in {self.dir}: `scripts/cluster down` first")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logdir.mkdir(exist_ok=True)
        self._clean_network()
        self._save()  # from here on, `down` can clean up what exists
        self._database()
        for h in self.spec.hosts():
            netns.add(h)
        self._start_proxy()
        for h in self.spec.hosts():
            self.start(h.name)
        self._wait_ready(timeout)
        self.state.up_seconds = time.monotonic() - began
        self._save()
        return self.state.up_seconds

    def _database(self) -> None:
        """A fresh database of the cluster's own, migrated, and a key for its tenant."""
        admin = self.spec.database_url().rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.spec.database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.spec.database}"')
        migrate.upgrade(self.db_url)
        self.state.key = asyncio.run(_create_key(self.db_url))

    def _start_proxy(self) -> None:
        self.state.api_ports = {name: free_port() for name in self.apis()}
        config = self.dir / "paths.json"
        paths = self.spec.paths(self.state.api_ports)
        config.write_text(json.dumps([p.as_json() for p in paths], indent=2))
        self.state.control = f"127.0.0.1:{free_port()}"
        argv = [sys.executable, "-m", "smartq.cluster", "proxy", "--paths", str(config)]
        argv += ["--control", self.state.control]
        self.state.pids["proxy"] = processes.start(
            argv, _inherited(), self.logdir / "proxy.log", ROOT
        )
        self._save()
        _wait(self.proxy.healthy, 30, "the proxy's control interface")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for name in self.apis():
            _wait(lambda n=name: _ready(self.api_base(n)), deadline - time.monotonic(), name)
        workers = [h.name for h in self.spec.hosts() if h.role is Role.WORKER]
        sql = "SELECT count(*) FROM workers WHERE id = ANY(%s) AND state <> 'offline'"
        _wait(
            lambda: self.scalar(sql, (workers,)) == len(workers),
            deadline - time.monotonic(),
            "every worker online",
        )
        _wait(lambda: self.leader() is not None, deadline - time.monotonic(), "a leader")

    def leader(self) -> str | None:
        """The first of :meth:`leaders` (None: none yet)."""
        leaders = self.leaders()
        return leaders[0] if leaders else None

    def leaders(self) -> list[str]:
        """The running schedulers whose logs last say they lead (more than one: a leader that
        has not noticed it lost its lock)."""
        out = []
        for h in self.spec.hosts():
            if h.role is Role.SCHEDULER and self.alive(h.name):
                actions = [a for a in _actions(self.log(h.name)) if a.startswith("leader.")]
                if actions and actions[-1] == "leader.acquired":
                    out.append(h.name)
        return out

    def schedulers(self) -> list[str]:
        return [h.name for h in self.spec.hosts() if h.role is Role.SCHEDULER]

    # -- down ------------------------------------------------------------------------------
    def down(self, *, drop_database: bool = False) -> list[str]:
        """Stop every process, delete namespaces and veths; returns what had to be killed."""
        self._heal_all()  # so processes can drain and say goodbye rather than be killed
        names = {pid: name for name, pid in self.state.pids.items()}
        killed = processes.stop(list(names), timeout=10)
        self.state.pids.clear()
        self._clean_network()
        if drop_database:
            admin = self.spec.database_url().rsplit("/", 1)[0] + "/postgres"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.spec.database}" WITH (FORCE)')
        with contextlib.suppress(FileNotFoundError):
            (self.dir / "state.json").unlink()
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None
        return [names[pid] for pid in killed]

    def _heal_all(self) -> None:
        if self.state.control:
            with contextlib.suppress(httpx.HTTPError, ToxicError):
                self.proxy.clear()
        for h in self.spec.hosts():
            if netns.link_up(h) is False:
                netns.set_link(h, up=True)

    def _clean_network(self) -> None:
        for h in self.spec.hosts():
            netns.remove(h)

    # -- status ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        hosts = [
            {
                "host": h.name,
                "role": h.role.value,
                "namespace": h.namespace if netns.exists(h) else None,
                "address": h.address,
                "link_up": netns.link_up(h),
                "pid": self.state.pids.get(h.name),
                "alive": self.alive(h.name),
            }
            for h in self.spec.hosts()
        ]
        try:
            paths: list[dict[str, Any]] = self.proxy.paths()
        except httpx.HTTPError:
            paths = []
        return {
            "proxy": {"control": self.state.control, "alive": self.alive("proxy")},
            "leader": self.leader(),
            "database": self.db_url,
            "exchange": self.exchange,
            "apis": {n: self.api_base(n) for n in self.state.api_ports},
            "up_seconds": round(self.state.up_seconds, 1),
            "hosts": hosts,
            "paths": paths,
        }

    # -- helpers ---------------------------------------------------------------------------
    def rows(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        with psycopg.connect(self.db_url, row_factory=dict_row) as conn:
            return list(conn.execute(sql, params).fetchall())

    def scalar(self, sql: str, params: Any = None) -> Any:
        with psycopg.connect(self.db_url) as conn:
            row = conn.execute(sql, params).fetchone()
            return None if row is None else row[0]

    def _save(self) -> None:
        file = self.dir / "state.json"
        file.write_text(self.state.dump())
        file.chmod(0o600)  # it holds the key


def _inherited() -> dict[str, str]:
    """The environment of a child: ours without smartq's own settings (each process gets the
    cluster's), with the project on ``PYTHONPATH`` (a worktree runs its own code)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTQ_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


async def _create_key(url: str) -> str:
    engine = create_async(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            made = await keystore.create_key(
                conn, tenant=TENANT, scopes=set(Scope), label="cluster"
            )
            return made.key
    finally:
        await engine.dispose()


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + max(timeout, 0)
    while not check():
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _actions(log: str) -> list[str]:
    """The ``action`` of every JSON record of a process log."""
    out = []
    for line in log.splitlines():
        with contextlib.suppress(ValueError, AttributeError):
            action = json.loads(line).get("action")
            if isinstance(action, str):
                out.append(action)
    return out
