"""What :class:`~smartq.client.Client` and :class:`~smartq.client.AsyncClient` share, with no
I/O: where the server is and which key to present, and every request as a value (:class:`Call`)
turned into an ``httpx.Request`` (:class:`Wire`). What answers mean and when to try again is
:mod:`smartq.client.answers`'. The two clients only send.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Final, Literal, Protocol, TypedDict
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx
import orjson
from pydantic_settings import BaseSettings, SettingsConfigDict

from smartq.errors import (
    ConfigurationError,
)
from smartq.registry import Registry, registry

DEFAULT_URL = "http://127.0.0.1:8000"
#: The largest page the API serves (``SMARTQ_PAGE_LIMIT_MAX``'s default).
PAGE_SIZE = 500
#: The most jobs one ``POST /jobs/batch`` of ``submit_many`` carries (the server's default
#: ``SMARTQ_MAX_BATCH_JOBS``).
CHUNK = 10_000
#: Log lines per page (the route's own maximum).
LOG_PAGE_SIZE = 5_000


class ClientSettings(BaseSettings):
    """Where the API is and the key to present: ``SMARTQ_URL``, ``SMARTQ_API_KEY``."""

    model_config = SettingsConfigDict(env_prefix="SMARTQ_", extra="ignore")

    url: str = DEFAULT_URL
    api_key: str | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The API's base URL (no trailing slash) and the headers every request sends."""

    url: str
    headers: Mapping[str, str]

    @property
    def ws_url(self) -> str:
        """The stream's URL: ``ws://`` for ``http://``, ``wss://`` for ``https://``."""
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path + "/jobs/stream", "", ""))

    @property
    def auth_headers(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items() if k == "authorization"}


class Wire:
    """Calls as ``httpx.Request`` s, for the client to hand to its httpx transport directly:
    ``httpx.Client``'s layers above the transport (URL merging, auth, cookies, redirects, event
    hooks), which the SDK uses none of, were a third of a submit's client CPU."""

    def __init__(self, api: Endpoint, timeout: float) -> None:
        self._base = api.url
        self._headers = list(api.headers.items())
        self._extensions = {"timeout": httpx.Timeout(timeout).as_dict()}
        self._urls: dict[str, httpx.URL] = {}

    def request(self, call: Call) -> httpx.Request:
        url = self._urls.get(call.path)
        if url is None:
            url = httpx.URL(self._base + call.path)
            if len(self._urls) < 64:  # the fixed paths (/jobs, /jobs/batch) stay parsed
                self._urls[call.path] = url
        headers = self._headers if call.headers is None else [*self._headers, *call.headers.items()]
        return httpx.Request(
            call.method,
            url,
            params=None if call.params is None else tuple(call.params),
            headers=headers,
            content=call.body,
            extensions=self._extensions,
        )


def endpoint(url: str | None, api_key: str | None) -> Endpoint:
    """The arguments, else ``SMARTQ_URL`` / ``SMARTQ_API_KEY``, else the local default."""
    if url is None or api_key is None:
        settings = ClientSettings()
        url = settings.url if url is None else url
        api_key = settings.api_key if api_key is None else api_key
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"the API's URL must be http(s)://host[:port], not {url!r}")
    headers = {"content-type": "application/json", "accept": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return Endpoint(url.rstrip("/"), headers)


# -- requests ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """One request. ``repeatable``: sending it twice does no harm (a read, a cancel, a POST
    with an idempotency key), so it may be retried."""

    method: str
    path: str
    params: Sequence[tuple[str, str]] | None = None
    body: bytes | None = None
    repeatable: bool = True
    headers: Mapping[str, str] | None = None


class HasId(Protocol):
    @property
    def id(self) -> uuid.UUID: ...


JobRef = str | uuid.UUID | HasId


def ref_id(ref: JobRef) -> str:
    """A job's id as text, from an id or anything with an ``id`` (a Job)."""
    if isinstance(ref, str):
        return ref
    if isinstance(ref, uuid.UUID):
        return str(ref)
    return str(ref.id)


def ref_ids(refs: JobRef | Iterable[JobRef] | None) -> list[str]:
    """One id or many, as text."""
    if refs is None:
        return []
    if isinstance(refs, str | uuid.UUID):
        return [ref_id(refs)]
    if isinstance(refs, Iterable):
        return [ref_id(r) for r in refs]
    return [ref_id(refs)]


_names: dict[Callable[..., Any], str] = {}


def type_name(target: str | Callable[..., Any], types: Registry = registry) -> str:
    """The job type to submit (:meth:`Registry.name_of`), remembered per function."""
    if isinstance(target, str):
        return target
    name = _names.get(target)
    if name is None:
        name = _names[target] = types.name_of(target)
    return name


class JobOptions(TypedDict, total=False):
    """A job's optional fields, as :meth:`Client.submit` and ``batch.add`` take them; those not
    given (or None) are left to the job type's and the server's defaults. ``retry`` is
    ``max_attempts``, or the whole policy (``{"max_attempts": 5, "initial_delay_seconds": 1}``);
    ``run_at`` must carry a time zone; ``resources`` (``{"gpu": 1}``) and ``labels``
    (``{"zone": "eu"}``) are what a worker must offer to run it."""

    priority: str | int | None
    cpu_units: int | None
    memory_mb: int | None
    resources: Mapping[str, int] | None
    labels: Mapping[str, str] | None
    retry: int | Mapping[str, float] | None
    timeout_seconds: float | None
    run_at: datetime | None
    name: str | None


def job_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a job's body from its options."""
    fields = {k: v for k, v in options.items() if v is not None}
    retry = fields.get("retry")
    if isinstance(retry, int):
        fields["retry"] = {"max_attempts": retry}
    elif retry is not None:
        fields["retry"] = dict(retry)
    for name in ("resources", "labels"):
        if name in fields:
            fields[name] = dict(fields[name])
    return fields


def job_body(
    target: str | Callable[..., Any],
    payload: Mapping[str, Any] | None,
    depends_on: Iterable[JobRef] | None,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """A job as the API takes it: its type's name, payload, dependencies and options."""
    body = job_fields(options)
    body["type"] = type_name(target)
    if payload:
        body["payload"] = payload
    if depends_on:
        body["depends_on"] = [ref_id(d) for d in depends_on]
    return body


def submit_call(
    target: str | Callable[..., Any],
    payload: Mapping[str, Any] | None,
    depends_on: Iterable[JobRef] | None,
    idempotency_key: str | None,
    options: Mapping[str, Any],
) -> Call:
    """``POST /jobs``, always with an idempotency key (a fresh one when none is given), so a
    retried submit returns the job the first try made instead of making a second."""
    body = job_body(target, payload, depends_on, options)
    body["idempotency_key"] = idempotency_key or str(uuid.uuid4())
    return Call("POST", "/jobs", body=orjson.dumps(body))


def batch_call(
    jobs: list[dict[str, Any]],
    name: str | None,
    idempotency_key: str,
    callbacks: Sequence[Mapping[str, Any]] = (),
) -> Call:
    """``POST /jobs/batch``: one atomic submission; the key makes its retry harmless.
    ``callbacks``: ``[{"url": ..., "events": [...]}]``, where the batch's events are POSTed."""
    body: dict[str, Any] = {"jobs": jobs}
    if name is not None:
        body["name"] = name
    if callbacks:
        body["callbacks"] = [{"url": c["url"], "events": list(c["events"])} for c in callbacks]
    # Minimal answers (each job's id, key and status): the full documents of 10,000 jobs were
    # a third of what the SDK spent on such a batch, to parse what it had just sent.
    headers = {"idempotency-key": idempotency_key, "prefer": "return=minimal"}
    return Call("POST", "/jobs/batch", body=orjson.dumps(body), headers=headers)


def accepted_docs(answer: dict[str, Any], bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The jobs of ``POST /jobs/batch``'s minimal answer (id, key, status), each with the type
    it was sent with and its batch: enough for a :class:`~smartq.client.job.Job` until it is
    read again."""
    batch_id = answer["batch_id"]
    return [
        {"type": body["type"], "batch_id": batch_id, **doc}
        for body, doc in zip(bodies, answer["jobs"], strict=True)
    ]


def list_params(
    status: str | Iterable[str] | None,
    type: str | None,
    batch_id: JobRef | None,
    priority: str | int | None,
    limit: int,
) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = [("limit", str(limit))]
    statuses = [status] if isinstance(status, str) else list(status or ())
    params += [("status", s) for s in statuses]
    if type is not None:
        params.append(("type", type))
    if batch_id is not None:
        params.append(("batch_id", ref_id(batch_id)))
    if priority is not None:
        params.append(("priority", str(priority)))
    return params


def link_params(parent_id: JobRef | None, schedule_id: str | None) -> list[tuple[str, str]]:
    """The filters of ``GET /jobs`` by what made a job: its parent, its schedule."""
    params: list[tuple[str, str]] = []
    if parent_id is not None:
        params.append(("parent_id", ref_id(parent_id)))
    if schedule_id is not None:
        params.append(("schedule_id", schedule_id))
    return params


def logs_params(after: str | None, attempt: int | None) -> list[tuple[str, str]]:
    params = [("limit", str(LOG_PAGE_SIZE))]
    if after is not None:
        params.append(("after", after))
    if attempt is not None:
        params.append(("attempt", str(attempt)))
    return params


def stream_url(ws_url: str, params: Sequence[tuple[str, str]]) -> str:
    return f"{ws_url}?{urlencode(params)}" if params else ws_url


def spec_body(spec: Mapping[str, Any]) -> dict[str, Any]:
    """One job of ``submit_many``: ``type`` (a name or a ``@smartq.job`` function), ``payload``,
    ``depends_on`` (job ids), ``idempotency_key`` and :class:`JobOptions`."""
    options = dict(spec)
    try:
        target = options.pop("type")
    except KeyError:
        raise ConfigurationError(f"a job to submit needs a 'type': {spec!r}") from None
    return job_body(target, options.pop("payload", None), options.pop("depends_on", None), options)


def page_call(path: str, params: list[tuple[str, str]], cursor: str | None) -> Call:
    """A page of a list: the first (no ``cursor``) or the one after ``cursor``."""
    return Call("GET", path, params=[*params, ("cursor", cursor)] if cursor else params)


# -- administration (admin keys) --------------------------------------------------------------


class Unchanged(Enum):
    """The type of :data:`UNCHANGED`."""

    UNCHANGED = "unchanged"


#: A field a patch leaves as it is (None would clear it).
UNCHANGED: Final = Unchanged.UNCHANGED
Breaker = Literal["open", "closed", "auto"]


def tenant_path(name: str) -> str:
    return f"/admin/tenants/{quote(name, safe='')}"


def tenant_put_call(
    name: str,
    max_active_jobs: int | None,
    submit_rate: float | None,
    max_running: int | None,
    weight: float | None,
) -> Call:
    """``PUT /admin/tenants/{name}``: what it says replaces what was set (None: the
    default); sending it twice does the same, so it may be retried."""
    body = {
        "max_active_jobs": max_active_jobs,
        "submit_rate": submit_rate,
        "max_running": max_running,
        "weight": weight,
    }
    return Call("PUT", tenant_path(name), body=orjson.dumps(body))


def callback_secret_call(name: str, secret: str | None) -> Call:
    """``PUT`` (or, with None, ``DELETE``) ``/admin/tenants/{name}/callback-secret``."""
    path = f"{tenant_path(name)}/callback-secret"
    if secret is None:
        return Call("DELETE", path)
    return Call("PUT", path, body=orjson.dumps({"secret": secret}))


def type_patch_call(
    name: str,
    rate_limit: str | Unchanged | None,
    max_running: int | Unchanged | None,
    breaker: Breaker | Unchanged,
) -> Call:
    """``PATCH /types/{name}`` with only the fields given (None clears one); repeatable."""
    fields = {"rate_limit": rate_limit, "max_running": max_running, "breaker": breaker}
    body = {k: v for k, v in fields.items() if v is not UNCHANGED}
    return Call("PATCH", f"/types/{quote(name, safe='')}", body=orjson.dumps(body))


def worker_path(worker_id: str, action: str = "") -> str:
    return f"/workers/{quote(worker_id, safe='')}" + (f"/{action}" if action else "")


def worker_resize_call(
    worker_id: str, cpu_units: int | Unchanged | None, memory_mb: int | Unchanged | None
) -> Call:
    """``PATCH /workers/{id}`` with only the fields given (None: the worker's own size)."""
    fields = {"cpu_units": cpu_units, "memory_mb": memory_mb}
    body = {k: v for k, v in fields.items() if v is not UNCHANGED}
    return Call("PATCH", worker_path(worker_id), body=orjson.dumps(body))


def pause_path(kind: str, name: str | None, action: str) -> str:
    """``POST`` path of a pause or resume: ``batch`` (its id), ``type`` (its name) or ``all``."""
    if kind == "all":
        return f"/admin/{action}"
    if kind not in ("batch", "type") or not name:
        raise ConfigurationError("pause a batch (its id), a type (its name) or all")
    plural = "batches" if kind == "batch" else "types"
    return f"/{plural}/{quote(str(name), safe='')}/{action}"


# -- cron schedules ---------------------------------------------------------------------------


def schedule_path(schedule_id: str, action: str = "") -> str:
    return f"/schedules/{quote(schedule_id, safe='')}" + (f"/{action}" if action else "")


def schedule_create_call(cron: str, fields: Mapping[str, Any]) -> Call:
    """``POST /schedules``: not repeatable (a retry could make a second schedule)."""
    body = {"cron": cron, **{k: v for k, v in fields.items() if v is not None}}
    return Call("POST", "/schedules", body=orjson.dumps(body), repeatable=False)


def schedule_patch_call(schedule_id: str, fields: Mapping[str, Any]) -> Call:
    """``PATCH /schedules/{id}`` with the fields given; sending it twice does the same."""
    return Call("PATCH", schedule_path(schedule_id), body=orjson.dumps(dict(fields)))
