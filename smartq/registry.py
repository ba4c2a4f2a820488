"""The job-type registry and the ``@smartq.job`` decorator.

Registering only records the function and its defaults; running it (timeout, error
classification, logging) is the worker's business (``worker/executor.py``). Every process imports
the same modules (``SMARTQ_IMPORTS`` / ``--import``), so the API can reject unknown types.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from smartq.errors import ConfigurationError, UnknownJobType

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
    #: Run in a child process that can be killed at its deadline (plain functions only).
    isolated: bool = False


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


registry = Registry()


def job(
    name: str | None = None,
    *,
    timeout: float | None = None,
    max_attempts: int | None = None,
    initial_delay_seconds: float | None = None,
    backoff_multiplier: float | None = None,
    cpu_units: int | None = None,
    memory_mb: int | None = None,
    isolated: bool = False,
    into: Registry | None = None,
) -> Callable[[F], F]:
    """Register the decorated ``def f(ctx)`` or ``async def f(ctx)`` as a job type.

    The keyword arguments are the type's defaults; a submission's own fields win over them.
    """

    def decorate(func: F) -> F:
        is_async = inspect.iscoroutinefunction(func)
        if isolated and is_async:
            raise ConfigurationError("isolated=True is for plain functions, not async ones")
        (into or registry).register(
            JobType(
                name=name or func.__name__,
                func=func,
                is_async=is_async,
                timeout_seconds=timeout,
                max_attempts=max_attempts,
                initial_delay_seconds=initial_delay_seconds,
                backoff_multiplier=backoff_multiplier,
                cpu_units=cpu_units,
                memory_mb=memory_mb,
                isolated=isolated,
            )
        )
        return func

    return decorate


def load_job_modules(modules: Iterable[str]) -> None:
    """Import the built-in job types and the user's modules so their decorators run."""
    for module in [BUILTIN_MODULE, *modules]:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import job module {module!r}: {exc}") from exc
