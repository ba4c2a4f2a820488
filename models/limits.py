"""Bounds on what a job may ask for, shared by the API's validation and the ``@smartq.job``
decorator: a job type's defaults are then always values a submission could carry itself."""

from __future__ import annotations

MAX_NAME_LENGTH = 200
MAX_ATTEMPTS = 100
MAX_DELAY_SECONDS = 86_400
MAX_BACKOFF = 100
MAX_CPU_UNITS = 100_000
MAX_MEMORY_MB = 1_000_000_000
MAX_TIMEOUT_SECONDS = 30 * 86_400
