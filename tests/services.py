"""Where the real PostgreSQL and RabbitMQ are, and what to do when they are not there.

On a laptop a missing server skips the tests that need it; in CI (``CI=true``) it fails them,
so CI can never pass by skipping (the habit of dramatiq's tests/conftest.py).
"""

from __future__ import annotations

import os
import socket
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_URL = os.environ.get(
    "SMARTQ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
RABBITMQ_URL = os.environ.get("SMARTQ_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 2):
            return True
    except OSError:
        return False


def unavailable(what: str, url: str) -> NoReturn:
    message = f"{what} is not reachable at {url}"
    if CI:
        pytest.fail(message + " (CI=true: tests that need it fail rather than skip)")
    pytest.skip(message)


def require_postgres() -> str:
    if not _reachable(POSTGRES_URL):
        unavailable("PostgreSQL", POSTGRES_URL)
    return POSTGRES_URL


def require_rabbitmq() -> str:
    if not _reachable(RABBITMQ_URL):
        unavailable("RabbitMQ", RABBITMQ_URL)
    return RABBITMQ_URL
