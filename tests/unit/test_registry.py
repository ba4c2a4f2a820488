"""``@smartq.job``: both decorator forms register; anything it cannot use fails at import."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import pytest

import smartq
from smartq.errors import ConfigurationError
from smartq.registry import Registry, job
from worker.context import JobContext


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The default registry, empty for the test (the bare form cannot take ``into``)."""
    reg = Registry()
    # smartq.registry names the instance (smartq/__init__.py): patch the module's global.
    monkeypatch.setattr(sys.modules["smartq.registry"], "registry", reg)
    return reg


def test_bare_decorator_registers_under_the_function_name(fresh: Registry) -> None:
    @smartq.job
    def thumbnail(ctx: JobContext) -> dict[str, bool]:
        return {"ok": True}

    @smartq.job
    async def resize(ctx: JobContext) -> None:
        return None

    assert fresh.names() == ["resize", "thumbnail"]
    assert fresh.get("thumbnail").func is thumbnail  # the function itself, not a wrapper
    assert fresh.get("resize").is_async
    assert thumbnail(None) == {"ok": True}  # type: ignore[arg-type]


def test_called_decorator_with_and_without_arguments(fresh: Registry) -> None:
    @smartq.job()
    def plain(ctx: JobContext) -> None:
        return None

    @smartq.job("named", timeout=60, max_attempts=5, cpu_units=2, memory_mb=1024)
    def other(ctx: JobContext, extra: int = 0) -> None:
        return None

    assert fresh.names() == ["named", "plain"]
    named = fresh.get("named")
    assert named.func is other
    assert (named.timeout_seconds, named.max_attempts) == (60, 5)
    assert (named.cpu_units, named.memory_mb) == (2, 1024)


def _ctx_only(ctx: JobContext) -> None:
    return None


def _no_argument() -> None:
    return None


def _two_arguments(ctx: JobContext, other: int) -> None:
    return None


def _keyword_only(*, ctx: JobContext) -> None:
    return None


async def _async(ctx: JobContext) -> None:
    return None


@pytest.mark.parametrize(
    ("use", "complaint"),
    [
        (lambda: job(5), "name must be a non-empty string"),  # type: ignore[call-overload]
        (lambda: job(""), "name must be a non-empty string"),
        (lambda: job("a\x00b"), "without NUL"),
        (lambda: job("x" * 201), "at most 200"),
        (lambda: job("x")(42), "decorates a function, not 42"),  # type: ignore[type-var]
        (lambda: job("x")(_no_argument), "must take one positional argument, ctx"),
        (lambda: job("x")(_two_arguments), "must take one positional argument, ctx"),
        (lambda: job("x")(_keyword_only), "must take one positional argument, ctx"),
        (lambda: job()(functools.partial(_two_arguments, other=1)), "has no __name__"),
        (lambda: job(timeout=0), "timeout must be a number over 0"),
        (lambda: job(timeout=-1), "timeout must be a number over 0"),
        (lambda: job(timeout="60"), "timeout must be"),  # type: ignore[call-overload]
        (lambda: job(timeout=float("nan")), "timeout must be"),
        (lambda: job(timeout=31 * 86_400), "timeout must be"),
        (lambda: job(max_attempts=0), "max_attempts must be an integer from 1 to 100"),
        (lambda: job(max_attempts=2.5), "max_attempts must be an integer"),  # type: ignore[call-overload]
        (lambda: job(max_attempts=True), "max_attempts must be an integer"),
        (lambda: job(initial_delay_seconds=-1), "initial_delay_seconds must be"),
        (lambda: job(backoff_multiplier=0.5), "backoff_multiplier must be a number from 1"),
        (lambda: job(cpu_units=0), "cpu_units must be an integer from 1"),
        (lambda: job(cpu_units="2"), "cpu_units must be"),  # type: ignore[call-overload]
        (lambda: job(memory_mb=-5), "memory_mb must be"),
        (lambda: job(isolated="yes"), "isolated must be True or False"),  # type: ignore[call-overload]
        (lambda: job("x", isolated=True)(_async), "isolated=True is for plain functions"),
    ],
)
def test_what_the_decorator_cannot_use_fails_loudly(
    fresh: Registry, use: Callable[[], Any], complaint: str
) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        use()
    assert fresh.names() == []


def test_functions_callable_with_one_argument_are_accepted(fresh: Registry) -> None:
    def star(*args: Any) -> None:
        return None

    job("ctx_only")(_ctx_only)
    job("star")(star)
    job("lambda")(lambda ctx: None)
    job("partial", timeout=0.5)(functools.partial(_two_arguments, other=1))
    assert fresh.names() == ["ctx_only", "lambda", "partial", "star"]
