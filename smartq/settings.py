"""Settings for every smartq process: one pydantic-settings class, env prefix ``SMARTQ_``.

With neither ``SMARTQ_DATABASE_URL`` nor ``SMARTQ_BROKER_URL`` set, smartq runs on its embedded
default: SQLite in a local file and the in-process broker.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from scheduler import resources
from smartq import urlguard
from smartq.errors import ConfigurationError

DEFAULT_SQLITE_PATH = Path("smartq-data") / "smartq.sqlite3"


class Settings(BaseSettings):
    """Every knob of smartq, read once from the environment (prefix ``SMARTQ_``)."""

    model_config = SettingsConfigDict(env_prefix="SMARTQ_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="postgresql://user@host:5432/db or sqlite:///path; unset: local SQLite file.",
    )
    broker_url: str | None = Field(
        default=None, description="amqp://user:pass@host:5672/ ; unset: the in-process broker."
    )
    broker_exchange: str = Field(default="smartq", description="The topic exchange's name.")
    sqlite_path: Path = DEFAULT_SQLITE_PATH
    imports: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Modules that register job types (comma separated)."
    )

    # API
    auth: Literal["on", "off"] | None = Field(
        default=None,
        description="on: every request needs an API key; off: no checks at all (trusted "
        "networks only: a non-loopback bind then needs --insecure). Unset: on, except for "
        "`smartq dev` bound to loopback, which runs open and says so.",
    )
    api_keep_alive_seconds: float = Field(
        default=30.0, gt=0, description="How long an idle HTTP keep-alive connection stays open."
    )
    max_payload_bytes: int = 256 * 1024
    max_request_bytes: int = 32 * 1024 * 1024
    max_batch_jobs: int = 10_000
    max_dependencies: int = 1_000
    page_limit_max: int = 500
    auth_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long an API process trusts a key it verified before reading its row "
        "again: a revoked key stops working within this time (0: read it on every request).",
    )
    api_hint_linger_seconds: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="The shortest gap between two `job.submitted` hints of an API process: the "
        "first after a quiet spell goes at once, the ids of a stream of submits wait this long "
        "at most to go out together (0: one hint per loop turn).",
    )
    auth_stream_check_seconds: float = Field(
        default=1.0,
        gt=0,
        le=5,
        description="How often an API process checks that the keys of its open streams still "
        "work; a stream whose key was revoked or expired is closed (4401).",
    )

    # Scheduler
    scheduler_poll_seconds: float = 2.0
    worker_lease_seconds: float = 15.0
    leader_lease_seconds: float = Field(
        default=10.0,
        ge=2,
        le=300,
        description="How long the leader's lock outlives the leader's silence: its lock session "
        "is ended by PostgreSQL after this long without a word (a frozen process, a stalled "
        "path), so the standby takes over; the leader itself stops after half of it.",
    )
    retry_jitter: float = Field(default=0.0, ge=0, le=1, description="Backoff spread: ±fraction.")
    scheduler_lookahead: int = Field(default=256, ge=1, description="Ready jobs a pass may skip.")
    scheduler_stats_seconds: float = Field(
        default=60.0, gt=0, description="How often the scheduler logs its pass timings."
    )
    scheduler_reserve_after_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How long a big job may be overtaken before it reserves (without backfill), "
        "and how late a reservation's promised start may be before its worker takes no backfill.",
    )
    scheduler_backfill: bool = Field(
        default=True,
        description="EASY backfill: the first job that does not fit reserves at once, and its "
        "worker takes only work predicted not to delay it.",
    )
    scheduler_critical_path_order: bool = Field(
        default=True,
        description="Among jobs of one priority, a longer predicted path to the end of the DAG "
        "counts as that much older.",
    )
    prediction_default_seconds: float = Field(
        default=10.0, gt=0, description="Predicted run time of a job type never seen to succeed."
    )
    forecast_jobs: int = Field(
        default=64,
        ge=0,
        le=1000,
        description="How many of the next ready jobs get a predicted start.",
    )
    scheduler_event_flush_seconds: float = Field(
        default=0.02,
        ge=0,
        description="How long the scheduler may hold status events to publish them with those "
        "of the next passes (0: at once). Dispatches and cancels never wait.",
    )
    scheduler_vacuum_seconds: float = Field(
        default=10.0,
        ge=0,
        description="When PostgreSQL's autovacuum is off, how often the scheduler vacuums the "
        "job tables itself (0: never).",
    )

    api_db_acquire_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How long a request waits for a database connection; past it the API "
        "answers 503 with Retry-After instead of hanging (a 2xx always means committed).",
    )
    api_deadline_seconds: float = Field(
        default=15.0,
        ge=0,
        description="An HTTP request not answered in this long gets 503 with Retry-After (a "
        "database whose path stalled); 0: no deadline. Above the longest request you expect "
        "(a batch of max_batch_jobs, a purge).",
    )
    # Flow control (issue 17): defaults for tenants and types an admin set nothing for
    tenant_max_active_jobs: int | None = Field(
        default=None,
        ge=1,
        description="Waiting + running jobs a tenant may have at most; a submit beyond it is "
        "answered 429 and writes nothing (unset: unlimited). PUT /admin/tenants/{name} sets "
        "it per tenant.",
    )
    tenant_submit_rate: float | None = Field(
        default=None,
        gt=0,
        description="Submit requests per second a tenant may make, a token bucket per API "
        "process (burst: one second's worth); beyond it 429 with Retry-After (unset: "
        "unlimited).",
    )
    tenant_max_running: int | None = Field(
        default=None,
        ge=1,
        description="Running jobs a tenant may have at most; the rest stay ready with the "
        "reason (unset: unlimited).",
    )
    breaker_min_attempts: int = Field(
        default=10, ge=1, description="A breaker opens only with this many attempts counted."
    )
    breaker_window_seconds: float = Field(
        default=60.0, gt=0, description="The window a breaker counts attempts over."
    )
    breaker_failure_ratio: float = Field(
        default=0.5, gt=0, le=1, description="The share of failures that opens a breaker."
    )
    breaker_cooldown_seconds: float = Field(
        default=30.0, gt=0, description="How long a breaker stays open before one probe."
    )
    breaker_max_cooldown_seconds: float = Field(
        default=600.0, gt=0, description="The cool-down doubles after a failed probe, to this."
    )
    schedules_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often the leading scheduler looks for new or changed cron schedules "
        "between the ticks it knows of: a new schedule's first tick fires at most this late.",
    )
    limits_poll_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often the scheduler reads what admins set (tenants, type limits, "
        "forced breakers): a change takes effect within this.",
    )

    # Batch callbacks (issue 19)
    callback_secret: str | None = Field(
        default=None,
        description="What every tenant's callback deliveries are signed with unless an admin "
        "set one for it (PUT /admin/tenants/{name}/callback-secret). With neither, a batch "
        "asking for callbacks is refused (422): deliveries are never sent unsigned.",
    )
    callback_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Callback hosts allowed although their address is loopback, private, "
        "link-local…: host names (whatever they resolve to) and addresses or CIDRs, comma "
        "separated, e.g. 127.0.0.1,hooks.internal,10.0.0.0/8.",
    )
    callback_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often the leading scheduler derives batches' events and sends the "
        "deliveries that are due.",
    )
    callback_retry_base_seconds: float = Field(
        default=5.0, gt=0, description="The first wait after a failed delivery; it doubles."
    )
    callback_retry_max_seconds: float = Field(
        default=3600.0, gt=0, description="The longest wait between two attempts."
    )
    callback_retry_window_seconds: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="A delivery not answered 2xx this long after its first attempt is given up "
        "(status failed).",
    )
    callback_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="How long one delivery attempt may take."
    )
    callback_concurrency: int = Field(
        default=16, ge=1, le=1000, description="Deliveries in flight at once, at most."
    )

    # Worker
    worker_id: str | None = None
    worker_resources: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict,
        description="Named resources this worker offers beyond cpu and memory, as "
        "NAME=COUNT,... (e.g. gpu=2,license=1); a job asking for them runs only where they are "
        "free.",
    )
    worker_labels: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Labels of this worker, as NAME=VALUE,... (e.g. zone=eu,disk=ssd); a job "
        "asking for labels runs only on a worker that has them all.",
    )
    heartbeat_seconds: float = 2.0
    shutdown_grace_seconds: float = 30.0
    worker_queue_expires_seconds: float = Field(
        default=600.0,
        ge=0,
        description="RabbitMQ deletes a worker's queue after it had no consumer this long "
        "(0: never); it must outlast the lease, and a returning worker declares it again.",
    )
    worker_log_wait_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How long a worker holds an attempt's report for the logger to confirm "
        "the attempt's log lines are stored (so its end is never visible before its logs). "
        "A logger with a backlog confirms late, and the jobs wait for it; after this long the "
        "worker reports anyway, with a warning, and stops waiting until the logger confirms "
        "again, so a missing logger costs this once, not on every job (0: never wait).",
    )
    worker_log_flush_seconds: float = Field(
        default=0.02,
        ge=0,
        description="How long a worker gathers its jobs' log lines before publishing them "
        "together (0: at once). Reports and heartbeats never wait.",
    )
    worker_memory_watch_seconds: float = Field(
        default=0.05,
        ge=0,
        description="How often a worker samples the RSS of an isolated job's processes; above "
        "the attempt's memory_mb they are killed and the attempt fails for memory, so its "
        "retry asks for more (0: isolated jobs are not held to their memory).",
    )

    # Logger
    log_retention_days: float = Field(
        default=30.0, description="Delete log lines older than this many days; 0 keeps them all."
    )
    log_batch_size: int = 500
    log_batch_seconds: float = 0.05

    # Retention of finished jobs (the leading scheduler's sweep)
    job_retention_days: float = Field(
        default=30.0,
        ge=0,
        description="Delete finished jobs (completed, failed, cancelled) this many days after "
        "they finished, with their attempts, logs, progress and edges, and their batch once "
        "it has no job left; a job something unfinished still depends on is kept (0: keep "
        "every job forever). Log lines have their own, SMARTQ_LOG_RETENTION_DAYS.",
    )
    retention_sweep_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How often the leading scheduler sweeps for jobs past the retention age.",
    )
    retention_batch_size: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Jobs deleted per transaction (each one short; a job's log lines go "
        "first, at most 5,000 a transaction).",
    )
    retention_max_per_sweep: int = Field(
        default=100_000,
        ge=1,
        description="Jobs one sweep deletes at most; the rest wait for the next sweep.",
    )

    # Monitoring and the live stream
    monitor_seconds: float = Field(
        default=2.0, gt=0, description="How often the scheduler and logger publish monitoring."
    )
    stream_buffer: int = Field(
        default=1_000, ge=1, description="Events buffered per WebSocket client before dropping."
    )
    stream_stall_seconds: float = Field(
        default=10.0, gt=0, description="A WebSocket client dropping events this long is closed."
    )

    failpoints: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Crash points for fault tests, e.g. after_commit:3."
    )

    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop",
        description="The event loop of smartq's processes: uvloop (libuv, in C: less CPU per "
        "request and message) or Python's own asyncio loop.",
    )

    @field_validator("imports", "failpoints", "callback_allowed_hosts", mode="before")
    @classmethod
    def _split_imports(cls, value: object) -> object:
        if isinstance(value, str):
            return [m.strip() for m in value.split(",") if m.strip()]
        return value

    @field_validator("worker_resources", mode="before")
    @classmethod
    def _parse_resources(cls, value: object) -> object:
        if isinstance(value, str):
            return resources.parse_counts([value])
        if isinstance(value, dict):
            return resources.check_counts(value)
        return value

    @field_validator("worker_labels", mode="before")
    @classmethod
    def _parse_labels(cls, value: object) -> object:
        if isinstance(value, str):
            return resources.parse_labels([value])
        if isinstance(value, dict):
            return resources.check_labels(value)
        return value

    @field_validator("callback_allowed_hosts")
    @classmethod
    def _check_allowance(cls, value: list[str]) -> list[str]:
        try:
            urlguard.parse_allowance(value)  # a bad entry stops the process at start
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None
        return value

    def callback_allowance(self) -> urlguard.Allowance:
        """``callback_allowed_hosts`` parsed (:mod:`smartq.urlguard`)."""
        return urlguard.parse_allowance(self.callback_allowed_hosts)

    @property
    def auth_required(self) -> bool:
        """Whether the API checks keys: only an explicit ``off`` turns that off (fail closed)."""
        return self.auth != "off"

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url is None

    def resolved_database_url(self) -> str:
        """The database URL as the user wrote it, or the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.sqlite_path}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built once."""
    return Settings()
