"""The job-type registry and the ``@smartq.job`` decorator.

Registering only records the function and its defaults; running it (timeout, error
classification, logging) is the worker's business (``worker/executor.py``). Every process imports
the same modules (``SMARTQ_IMPORTS`` / ``--import``), so the API can reject unknown types.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from models.limits import (
    MAX_ATTEMPTS,
    MAX_BACKOFF,
    MAX_CPU_UNITS,
    MAX_DELAY_SECONDS,
    MAX_MEMORY_MB,
    MAX_NAME_LENGTH,
    MAX_TIMEOUT_SECONDS,
)
from scheduler.resources import ResourceSpecError, check_counts, check_labels
from smartq.errors import ConfigurationError, UnknownJobType
from smartq.flowspec import BreakerPolicy, parse_rate

BUILTIN_MODULE = "worker.builtin_jobs"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class JobType:
    """A registered job type: its function and the defaults a submission may override."""

    name: str
    func: Callable[..., Any]
    is_async: bool
    timeout_seconds: float | None = None
    max_attempts: int | None = None
    initial_delay_seconds: float | None = None
    backoff_multiplier: float | None = None
    cpu_units: int | None = None
    memory_mb: int | None = None
    #: Named resources and labels its jobs need (None: none), e.g. {"gpu": 1}.
    resources: dict[str, int] | None = None
    labels: dict[str, str] | None = None
    #: Run in a child process that can be killed at its deadline (plain functions only).
    isolated: bool = False
    #: Dispatched at most this often (``"5/s"``) and this many at once, cluster-wide.
    rate_limit: str | None = None
    max_running: int | None = None
    #: Its circuit breaker's policy (None: the settings'); ``breaker_enabled=False``: none.
    breaker: BreakerPolicy | None = None
    breaker_enabled: bool = True


class Registry:
    """Name → :class:`JobType`."""

    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def register(self, job_type: JobType) -> None:
        existing = self._types.get(job_type.name)
        if existing is not None and existing.func is not job_type.func:
            raise ConfigurationError(f"job type {job_type.name!r} is registered twice")
        self._types[job_type.name] = job_type

    def get(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobType(name, self.names()) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def names(self) -> list[str]:
        return sorted(self._types)

    def name_of(self, target: str | Callable[..., Any]) -> str:
        """The job type to submit: a name as it is, or the type a ``@smartq.job`` function was
        registered as (the decorator returns the function itself, so the registry is asked)."""
        if isinstance(target, str):
            return target
        for name, job_type in self._types.items():
            if job_type.func is target:
                return name
        raise ConfigurationError(
            f"{target!r} is not a @smartq.job function; pass it decorated, or a type name"
        )


registry = Registry()


@dataclass(frozen=True, slots=True)
class _Bound:
    """What a numeric option of ``@smartq.job`` may be: the same bounds the API puts on the
    field a submission would override it with."""

    low: float
    high: float
    integer: bool
    low_open: bool = False

    def admits(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        above = self.low < value if self.low_open else self.low <= value
        return above and value <= self.high  # NaN is neither

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        low = f"over {self.low:g}" if self.low_open else f"from {self.low:g}"
        return f"{kind} {low} to {self.high:g}"


#: ``@smartq.job`` option → the JobType field it sets, and its bounds.
_OPTIONS: dict[str, tuple[str, _Bound]] = {
    "timeout": ("timeout_seconds", _Bound(0, MAX_TIMEOUT_SECONDS, False, low_open=True)),
    "max_attempts": ("max_attempts", _Bound(1, MAX_ATTEMPTS, True)),
    "initial_delay_seconds": ("initial_delay_seconds", _Bound(0, MAX_DELAY_SECONDS, False)),
    "backoff_multiplier": ("backoff_multiplier", _Bound(1, MAX_BACKOFF, False)),
    "cpu_units": ("cpu_units", _Bound(1, MAX_CPU_UNITS, True)),
    "memory_mb": ("memory_mb", _Bound(1, MAX_MEMORY_MB, True)),
}


def _defaults(options: dict[str, object], isolated: object) -> dict[str, Any]:
    """The JobType fields the options set; ConfigurationError for a value no job could have."""
    out: dict[str, Any] = {}
    for option, value in options.items():
        field, bound = _OPTIONS[option]
        if value is not None and not bound.admits(value):
            raise ConfigurationError(
                f"@smartq.job: {option} must be {bound.describe()}, not {value!r}"
            )
        out[field] = value
    if not isinstance(isolated, bool):
        raise ConfigurationError(f"@smartq.job: isolated must be True or False, not {isolated!r}")
    out["isolated"] = isolated
    return out


def _placement(resources: object, labels: object) -> dict[str, Any]:
    """Named resources and labels; ConfigurationError for a name or value no worker offers."""
    out: dict[str, Any] = {}
    try:
        for option, value, check in (
            ("resources", resources, check_counts),
            ("labels", labels, check_labels),
        ):
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ResourceSpecError(f"a mapping, not {value!r}")
            out[option] = check(value) or None
    except ResourceSpecError as exc:
        raise ConfigurationError(f"@smartq.job: {option}: {exc}") from None
    return out


def _flow(rate_limit: object, max_running: object, breaker: object) -> dict[str, Any]:
    """The flow-control fields; ConfigurationError for a value the scheduler could not use."""
    if rate_limit is not None:
        try:
            parse_rate(rate_limit)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"@smartq.job: rate_limit: {exc}") from None
    if max_running is not None and not _Bound(1, MAX_CPU_UNITS, True).admits(max_running):
        raise ConfigurationError(
            f"@smartq.job: max_running must be an integer from 1, not {max_running!r}"
        )
    if not isinstance(breaker, bool | BreakerPolicy):
        raise ConfigurationError(
            f"@smartq.job: breaker must be True, False or a BreakerPolicy, not {breaker!r}"
        )
    return {
        "rate_limit": rate_limit,
        "max_running": max_running,
        "breaker": breaker if isinstance(breaker, BreakerPolicy) else None,
        "breaker_enabled": breaker is not False,
    }


def _check_name(name: object) -> None:
    """A name the API can be asked for: text of 1 to 200 characters without NUL."""
    ok = isinstance(name, str) and 0 < len(name) <= MAX_NAME_LENGTH and "\x00" not in name
    if not ok:
        raise ConfigurationError(
            f"@smartq.job: the name must be a non-empty string of at most {MAX_NAME_LENGTH} "
            f"characters without NUL, not {name!r}"
        )


def _check_function(func: object, name: str | None) -> str:
    """The type's name; ConfigurationError unless ``func`` can be called as ``func(ctx)``."""
    if not callable(func):
        raise ConfigurationError(f"@smartq.job decorates a function, not {func!r}")
    if name is None:
        name = getattr(func, "__name__", None)
        if not isinstance(name, str):
            raise ConfigurationError(f"@smartq.job: {func!r} has no __name__; name the type")
        _check_name(name)
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # some C callables have none: nothing to check
        return name
    try:
        signature.bind(None)
    except TypeError:
        raise ConfigurationError(
            f"job function {name!r} must take one positional argument, ctx; "
            f"its signature is {signature}"
        ) from None
    return name


@overload
def job(func: F, /) -> F: ...


@overload
def job(
    name: str | None = None,
    *,
    timeout: float | None = None,
    max_attempts: int | None = None,
    initial_delay_seconds: float | None = None,
    backoff_multiplier: float | None = None,
    cpu_units: int | None = None,
    memory_mb: int | None = None,
    resources: Mapping[str, int] | None = None,
    labels: Mapping[str, str] | None = None,
    isolated: bool = False,
    rate_limit: str | None = None,
    max_running: int | None = None,
    breaker: bool | BreakerPolicy = True,
    into: Registry | None = None,
) -> Callable[[F], F]: ...


def job(
    name: str | Callable[..., Any] | None = None,
    *,
    timeout: float | None = None,
    max_attempts: int | None = None,
    initial_delay_seconds: float | None = None,
    backoff_multiplier: float | None = None,
    cpu_units: int | None = None,
    memory_mb: int | None = None,
    resources: Mapping[str, int] | None = None,
    labels: Mapping[str, str] | None = None,
    isolated: bool = False,
    rate_limit: str | None = None,
    max_running: int | None = None,
    breaker: bool | BreakerPolicy = True,
    into: Registry | None = None,
) -> Any:
    """Register the decorated ``def f(ctx)`` or ``async def f(ctx)`` as a job type, named
    after the function unless ``name`` says otherwise. ``@smartq.job`` and
    ``@smartq.job(...)`` both work; a value it cannot use raises ConfigurationError at import.

    The keyword arguments are the type's defaults; a submission's own fields win over them.
    ``rate_limit`` (``"5/s"``, ``"30/min"``) and ``max_running`` bound how fast and how many of
    the type run across the cluster (an admin may override both: ``PATCH /types/{name}``);
    ``breaker`` is its circuit breaker's :class:`~smartq.flowspec.BreakerPolicy`, or False for
    none. ``resources`` (``{"gpu": 1}``) and ``labels`` (``{"zone": "eu"}``) are what a worker
    must offer (``smartq worker --resource gpu=2 --label zone=eu``) to run it.
    """
    if callable(name):  # bare @smartq.job: the function came as the first argument
        return job()(name)
    if name is not None:
        _check_name(name)
    options: dict[str, object] = {
        "timeout": timeout,
        "max_attempts": max_attempts,
        "initial_delay_seconds": initial_delay_seconds,
        "backoff_multiplier": backoff_multiplier,
        "cpu_units": cpu_units,
        "memory_mb": memory_mb,
    }
    defaults = (
        _defaults(options, isolated)
        | _flow(rate_limit, max_running, breaker)
        | _placement(resources, labels)
    )
    target = into or registry

    def decorate(func: F) -> F:
        type_name = _check_function(func, name)
        is_async = inspect.iscoroutinefunction(func)
        if isolated and is_async:
            raise ConfigurationError("isolated=True is for plain functions, not async ones")
        target.register(JobType(name=type_name, func=func, is_async=is_async, **defaults))
        return func

    return decorate


def load_job_modules(modules: Iterable[str]) -> None:
    """Import the built-in job types and the user's modules so their decorators run."""
    for module in [BUILTIN_MODULE, *modules]:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import job module {module!r}: {exc}") from exc
