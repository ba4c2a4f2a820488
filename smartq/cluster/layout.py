"""The cluster's shape as values: which hosts, which processes on each, which addresses and
which proxy paths (pure; :mod:`smartq.cluster.cluster` makes it real).

Host ``i`` gets a /30 of the cluster's /24: the root namespace's end of its veth pair is
``.4i+1``, the host's end ``.4i+2``. A host has a route to its own /30 only, and the root
namespace does not forward, so a host reaches the proxy's listeners on its peer address and
nothing else; the root namespace reaches each host's API on the host's address.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from smartq.cluster.proxy import Address

API_PORT = 8000
POSTGRES = Address("127.0.0.1", 5432)
RABBITMQ = Address("127.0.0.1", 5672)


class Role(StrEnum):
    """A host's role is the ``smartq`` subcommand its process runs."""

    API = "api"
    SCHEDULER = "scheduler"
    LOGGER = "logger"
    WORKER = "worker"


@dataclass(frozen=True)
class Spec:
    """What ``up`` builds. Tests use a prefix and a subnet of their own, so a cluster started by
    hand and the scenarios' clusters never share a namespace, an address or a database."""

    prefix: str = "sqc"
    #: The third octet of 10.213.N.0/24.
    subnet: int = 0
    database: str = "smartq_cluster"
    exchange: str = "smartq_cluster"
    apis: int = 2
    schedulers: int = 2
    workers: int = 4
    worker_cpu_units: int = 8
    #: The machine's servers, as the proxy reaches them from the root namespace.
    postgres: Address = POSTGRES
    rabbitmq: Address = RABBITMQ
    postgres_user: str = "postgres"
    rabbitmq_credentials: str = "guest:guest"
    #: ``SMARTQ_*`` settings of every process (see :data:`DEFAULT_ENV`).
    env: tuple[tuple[str, str], ...] = ()
    #: Settings set to the process's own database URL (through its host's PostgreSQL path),
    #: besides ``SMARTQ_DATABASE_URL`` — e.g. a job module's own connection.
    database_url_vars: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.subnet <= 255:
            raise ValueError(f"subnet is an octet, not {self.subnet}")
        if len(self.prefix) > 5 or not self.prefix.isalnum():
            raise ValueError("prefix: at most 5 letters or digits (interface names are short)")
        if len(self.hosts()) > 63:
            raise ValueError("at most 63 hosts fit the /24")

    def hosts(self) -> list[Host]:
        roles = (
            [(f"api{i + 1}", Role.API) for i in range(self.apis)]
            + [(f"sched{i + 1}", Role.SCHEDULER) for i in range(self.schedulers)]
            + [("logger", Role.LOGGER)]
            + [(f"w{i + 1}", Role.WORKER) for i in range(self.workers)]
        )
        return [Host(self, i, name, role) for i, (name, role) in enumerate(roles)]

    def host(self, name: str) -> Host:
        for h in self.hosts():
            if h.name == name:
                return h
        raise KeyError(f"no host {name!r}; hosts: {[h.name for h in self.hosts()]}")

    def paths(self, api_ports: dict[str, int]) -> list[PathSpec]:
        """Two paths per host (its PostgreSQL, its RabbitMQ) and one per API (the root
        namespace's loopback ``api_ports[host]`` → the API), so each can be faulted alone."""
        out: list[PathSpec] = []
        for h in self.hosts():
            out.append(PathSpec(f"pg-{h.name}", Address(h.peer, self.postgres.port), self.postgres))
            out.append(
                PathSpec(f"amqp-{h.name}", Address(h.peer, self.rabbitmq.port), self.rabbitmq)
            )
            if h.role is Role.API:
                out.append(
                    PathSpec(
                        f"http-{h.name}",
                        Address("127.0.0.1", api_ports[h.name]),
                        Address(h.address, API_PORT),
                    )
                )
        return out

    def database_url(self, via: Address | None = None) -> str:
        """The cluster's database, directly (``via`` None: from the root namespace) or through
        a host's path."""
        at = via or self.postgres
        return f"postgresql://{self.postgres_user}@{at}/{self.database}"

    def rabbitmq_url(self, via: Address | None = None) -> str:
        at = via or self.rabbitmq
        return f"amqp://{self.rabbitmq_credentials}@{at}/"


@dataclass(frozen=True)
class Host:
    spec: Spec = field(repr=False)
    index: int
    name: str
    role: Role

    @property
    def namespace(self) -> str:
        return f"{self.spec.prefix}-{self.name}"

    @property
    def veth(self) -> str:
        """The root namespace's end of the pair (the one partitions take down)."""
        return f"{self.spec.prefix}-{self.name}"

    @property
    def inner_veth(self) -> str:
        return "eth0"

    @property
    def peer(self) -> str:
        """The root namespace's address on this host's link (where its proxy paths listen)."""
        return f"10.213.{self.spec.subnet}.{4 * self.index + 1}"

    @property
    def address(self) -> str:
        return f"10.213.{self.spec.subnet}.{4 * self.index + 2}"

    def database_url(self) -> str:
        return self.spec.database_url(Address(self.peer, self.spec.postgres.port))

    def rabbitmq_url(self) -> str:
        return self.spec.rabbitmq_url(Address(self.peer, self.spec.rabbitmq.port))

    def argv(self) -> list[str]:
        """The ``smartq`` command line of the host's process."""
        if self.role is Role.API:
            return ["api", "--host", "0.0.0.0", "--port", str(API_PORT)]
        if self.role is Role.WORKER:
            cpu = str(self.spec.worker_cpu_units)
            return ["worker", "--worker-id", self.name, "--cpu-units", cpu]
        return [self.role.value]

    def env(self) -> dict[str, str]:
        """The process's settings: the cluster's, then its own servers' paths."""
        db = self.database_url()
        return {
            **DEFAULT_ENV,
            **dict(self.spec.env),
            "SMARTQ_DATABASE_URL": db,
            "SMARTQ_BROKER_URL": self.rabbitmq_url(),
            "SMARTQ_BROKER_EXCHANGE": self.spec.exchange,
            **{name: db for name in self.spec.database_url_vars},
        }


#: Settings of every process unless the spec says otherwise: quick heartbeats and leases, so a
#: fault shows within seconds; JSON logs the scenarios can read.
DEFAULT_ENV = {
    "SMARTQ_LOG_FORMAT": "json",
    "SMARTQ_LOG_LEVEL": "INFO",
    "SMARTQ_HEARTBEAT_SECONDS": "0.5",
    "SMARTQ_WORKER_LEASE_SECONDS": "3",
    "SMARTQ_SCHEDULER_POLL_SECONDS": "0.5",
    "SMARTQ_SHUTDOWN_GRACE_SECONDS": "2",
    "SMARTQ_MONITOR_SECONDS": "0.5",
    # A leader cut off from PostgreSQL stops at half its lease and the server ends its lock
    # session after it. An API answers 503 to a request not answered in its deadline: 5 s cut
    # most batch submits off under 200 ms of latency (a submit is ~10 round trips), 10 s not.
    "SMARTQ_LEADER_LEASE_SECONDS": "5",
    "SMARTQ_API_DEADLINE_SECONDS": "10",
}


@dataclass(frozen=True)
class PathSpec:
    name: str
    listen: Address
    upstream: Address

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "listen": str(self.listen), "upstream": str(self.upstream)}
