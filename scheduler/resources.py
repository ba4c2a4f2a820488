"""Named resources and labels (pure): the name rule, parsing ``gpu=2,license=1``, and fit.

A worker declares counts of named resources (beyond cpu and memory) and labels; a job asks for
counts and labels. A job fits a worker when every named count it asks for is free there and every
label it asks for has the same value there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

NAME = re.compile(r"[a-z][a-z0-9_.-]{0,62}")
RESERVED = frozenset({"cpu", "memory"})
LABEL_VALUE_MAX = 63

Counts = Mapping[str, int]
Labels = Mapping[str, str]


class ResourceSpecError(ValueError):
    """A resource or label written wrong; the message says which and why."""


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ResourceSpecError(f"{name!r}: a name is [a-z][a-z0-9_.-]{{0,62}}")
    if name in RESERVED:
        raise ResourceSpecError(f"{name!r} is reserved (use the cpu/memory options)")
    return name


def check_count(name: str, count: object) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ResourceSpecError(f"{name}: a count is a positive integer, not {count!r}")
    return count


def check_label(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > LABEL_VALUE_MAX:
        raise ResourceSpecError(f"{name}: a label value is 1-{LABEL_VALUE_MAX} characters")
    return value


#: At most this many named resources or labels on one job or worker.
MAX_ENTRIES = 32


def check_counts(counts: Mapping[str, object]) -> dict[str, int]:
    """A mapping of resource counts as given (JSON, settings), checked entry by entry."""
    if len(counts) > MAX_ENTRIES:
        raise ResourceSpecError(f"at most {MAX_ENTRIES} named resources")
    return {check_name(str(name)): check_count(str(name), n) for name, n in counts.items()}


def check_labels(labels: Mapping[str, object]) -> dict[str, str]:
    """A mapping of labels as given, checked entry by entry."""
    if len(labels) > MAX_ENTRIES:
        raise ResourceSpecError(f"at most {MAX_ENTRIES} labels")
    return {check_name(str(name)): check_label(str(name), v) for name, v in labels.items()}


def _pairs(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in (p.strip() for raw in items for p in raw.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise ResourceSpecError(f"{item!r}: write NAME=VALUE")
        out.append((check_name(name.strip()), value.strip()))
    return out


def parse_counts(items: list[str]) -> dict[str, int]:
    """``["gpu=2", "license=1"]`` or ``["gpu=2,license=1"]`` → ``{"gpu": 2, "license": 1}``."""
    out: dict[str, int] = {}
    for name, value in _pairs(items):
        try:
            number = int(value)
        except ValueError as error:
            raise ResourceSpecError(
                f"{name}: a count is a positive integer, not {value!r}"
            ) from error
        out[name] = check_count(name, number)
    return out


def parse_labels(items: list[str]) -> dict[str, str]:
    """``["zone=eu", "disk=ssd"]`` → ``{"zone": "eu", "disk": "ssd"}``."""
    return {name: check_label(name, value) for name, value in _pairs(items)}


def counts_fit(asked: Counts, free: Counts) -> bool:
    return all(free.get(name, 0) >= n for name, n in asked.items())


def labels_match(asked: Labels, offered: Labels) -> bool:
    return all(offered.get(name) == value for name, value in asked.items())


@dataclass(frozen=True, slots=True)
class Offer:
    """What a worker declares beyond cpu and memory: named resource counts and labels."""

    resources: dict[str, int] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, resources: Mapping[str, int] | None, labels: Mapping[str, str] | None) -> Offer:
        return cls(dict(resources or {}), dict(labels or {}))


NO_OFFER = Offer()
