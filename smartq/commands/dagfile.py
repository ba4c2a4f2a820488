"""A DAG file for ``smartq submit -f``: YAML or JSON, either a list of jobs or ``{name: ...,
callbacks: [...], jobs: [...]}``. ``callbacks`` is ``[{url: ..., events: [...]}]``, where the
batch's events are POSTed, as on ``POST /jobs/batch`` (events default to all of them, as
``--callback-events`` does). Each job has a ``type`` and may have a ``key`` (how others name
it in their ``depends_on``; default: its type, numbered when taken), a ``payload`` and the
options of ``POST /jobs/batch`` (``priority``, ``cpu_units``, ``memory_mb``, ``resources``,
``labels``, ``retry``, ``timeout_seconds``, ``run_at``, ``name``). ``depends_on`` names keys of
the file or ids of existing jobs.

Mistakes a file can show on its own (a missing type, an unknown field, a dependency that is no
key of the file, a key used twice) are found here, with the file and the job named; what only
the server can judge (a cycle, an unknown type, a number out of range) it says.
"""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smartq.callbacks import EVENT_NAMES
from smartq.errors import ConfigurationError

#: The options a job of the file may set, beside key, type, payload and depends_on.
OPTIONS = (
    "priority",
    "cpu_units",
    "memory_mb",
    "resources",
    "labels",
    "retry",
    "timeout_seconds",
    "run_at",
    "name",
)
FIELDS = ("key", "type", "payload", "depends_on", *OPTIONS)


@dataclass(frozen=True, slots=True)
class DagJob:
    key: str
    type: str
    payload: dict[str, Any] = field(default_factory=dict)
    depends_on: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Dag:
    name: str | None
    jobs: list[DagJob]
    #: ``[{"url": ..., "events": [...]}]``: the file's callbacks, checked for shape here (the
    #: server checks the URL and the events).
    callbacks: list[dict[str, Any]] = field(default_factory=list)


def read(path: str) -> Dag:
    """The DAG in the file at ``path`` (``-``: standard input)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the DAG file {path}: {_reason(exc)}") from None
    return parse(load(text, path), path)


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def load(text: str, source: str) -> Any:
    """The document in ``text``: JSON for a ``.json`` file, else YAML (which reads JSON too)."""
    if source.endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{source}: not valid JSON: {exc}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(
            f"{source}: not valid YAML: {' '.join(str(exc).split())}"
        ) from None


def parse(doc: Any, source: str) -> Dag:
    """A DAG from a loaded document; :class:`ConfigurationError` naming what is wrong."""
    name: Any = None
    jobs = doc
    callbacks: list[dict[str, Any]] = []
    if isinstance(doc, dict):
        unknown = sorted(set(doc) - {"name", "jobs", "callbacks"})
        if unknown:
            raise ConfigurationError(
                f"{source}: unknown field {unknown[0]!r} at the top; a DAG file is a list of "
                "jobs, or {name: ..., callbacks: [...], jobs: [...]}"
            )
        name, jobs = doc.get("name"), doc.get("jobs")
        if name is not None and not isinstance(name, str):
            raise ConfigurationError(f"{source}: 'name' must be text")
        callbacks = _callbacks(doc.get("callbacks"), source)
    if not isinstance(jobs, list) or not jobs:
        raise ConfigurationError(
            f"{source}: no jobs; a DAG file is a list of jobs, or {{name: ..., jobs: [...]}}"
        )
    parsed = [_job(item, i, source) for i, item in enumerate(jobs, start=1)]
    _check_keys(parsed, source)
    return Dag(name, _with_keys(parsed), callbacks)


def _callbacks(value: Any, source: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    shape = "a list of {url: ..., events: [...]}"
    if not isinstance(value, list):
        raise ConfigurationError(f"{source}: 'callbacks' must be {shape}")
    out = []
    for number, item in enumerate(value, start=1):
        where = f"{source}: callback {number}"
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            raise ConfigurationError(f"{where}: needs a 'url'; 'callbacks' is {shape}")
        unknown = sorted(set(item) - {"url", "events"})
        if unknown:
            raise ConfigurationError(f"{where}: unknown field {unknown[0]!r}; use url, events")
        events = item.get("events", list(EVENT_NAMES))
        if isinstance(events, str):
            events = [events]
        if (
            not isinstance(events, list)
            or not events
            or not all(isinstance(e, str) for e in events)
        ):
            raise ConfigurationError(f"{where}: 'events' must be a list of event names")
        out.append({"url": item["url"], "events": events})
    return out


def _job(item: Any, number: int, source: str) -> _Parsed:
    where = f"{source}: job {number}"
    if not isinstance(item, dict):
        raise ConfigurationError(f"{where}: a job is a mapping with a 'type', not {item!r}")
    key = item.get("key")
    if key is not None:
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"{where}: 'key' must be text")
        where = f"{source}: job {key!r}"
    unknown = sorted(set(item) - set(FIELDS))
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown field {unknown[0]!r}; a job may have {', '.join(FIELDS)}"
        )
    job_type = item.get("type")
    if not isinstance(job_type, str) or not job_type:
        raise ConfigurationError(f"{where}: needs a 'type' (the job type's name)")
    payload = item.get("payload") or {}
    if not isinstance(payload, dict):
        raise ConfigurationError(f"{where}: 'payload' must be a mapping")
    depends = item.get("depends_on") or []
    if isinstance(depends, str):
        depends = [depends]
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        raise ConfigurationError(f"{where}: 'depends_on' must be a list of keys or job ids")
    options = {k: item[k] for k in OPTIONS if item.get(k) is not None}
    return _Parsed(key, job_type, payload, depends, options)


def _is_id(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Parsed:
    """A job as the file gives it (its key may be left out)."""

    key: str | None
    type: str
    payload: dict[str, Any]
    depends_on: list[str]
    options: dict[str, Any]


def _check_keys(jobs: list[_Parsed], source: str) -> None:
    keys: set[str] = set()
    for job in jobs:
        if job.key is None:
            continue
        if job.key in keys:
            raise ConfigurationError(f"{source}: key {job.key!r} is used by two jobs")
        keys.add(job.key)
    for job in jobs:
        for dep in job.depends_on:
            if dep not in keys and not _is_id(dep):
                who = repr(job.key) if job.key else f"of type {job.type!r}"
                raise ConfigurationError(
                    f"{source}: job {who} depends on {dep!r}, which is no key of this file "
                    "(nor a job id)"
                )


def _with_keys(jobs: list[_Parsed]) -> list[DagJob]:
    """Every job with a key: a job without one gets its type, numbered (``log``, ``log.2``)
    past the keys the file gives, so no given key is ever taken."""
    taken = {j.key for j in jobs if j.key is not None}
    out: list[DagJob] = []
    for job in jobs:
        key = job.key
        if key is None:
            key, n = job.type, 1
            while key in taken:
                n += 1
                key = f"{job.type}.{n}"
            taken.add(key)
        out.append(DagJob(key, job.type, job.payload, job.depends_on, job.options))
    return out
