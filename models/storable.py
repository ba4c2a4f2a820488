"""Values made storable: what PostgreSQL's ``text``/``jsonb`` and orjson cannot hold, replaced.

Workers send what user code produced: a log line, an error message, a result. PostgreSQL
refuses NUL (U+0000) in text and jsonb, and orjson refuses integers beyond 64 bits, so one such
value would fail the scheduler's or the logger's whole transaction, again at every redelivery
(a poison message). The message models pass these fields through here on validation, on the
worker and again on the consumer, so an old worker cannot poison a new scheduler either.
"""

from __future__ import annotations

import math
from typing import Any

NUL = "\x00"
REPLACEMENT = "\ufffd"
_INT64 = (-(2**63), 2**63 - 1)


def text(value: str) -> str:
    """``value`` with NUL characters replaced by U+FFFD."""
    return value.replace(NUL, REPLACEMENT) if NUL in value else value


def optional_text(value: str | None) -> str | None:
    return None if value is None else text(value)


def problem(value: Any) -> str | None:
    """Why a decoded JSON value (a submitted payload) cannot be stored as sent, or None: the
    API refuses what :func:`json_value` would have to change (integers beyond 64 bits are
    refused earlier, by orjson)."""
    if isinstance(value, str):
        return "contains a NUL (\\u0000) character" if NUL in value else None
    if isinstance(value, float):
        return None if math.isfinite(value) else "contains NaN or Infinity, which JSON has not"
    items: Any = ()
    if isinstance(value, dict):
        items = (x for kv in value.items() for x in kv)
    elif isinstance(value, list):
        items = value
    for item in items:
        found = problem(item)
        if found is not None:
            return found
    return None


def json_value(value: Any) -> Any:
    """A JSON value both PostgreSQL and orjson accept: NUL replaced in strings and keys, integers
    beyond 64 bits as their decimal strings, NaN and infinities as null."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {text(str(k)): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return value
