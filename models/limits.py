"""Bounds on what a job may ask for, shared by the API's validation, the ``@smartq.job``
decorator and the jobs a running job spawns: a job type's defaults are then always values a
submission could carry itself. Then smartq's own defaults, for what neither the submission nor
the job type says."""

from __future__ import annotations

MAX_NAME_LENGTH = 200
MAX_ATTEMPTS = 100
MAX_DELAY_SECONDS = 86_400
MAX_BACKOFF = 100
MAX_CPU_UNITS = 100_000
MAX_MEMORY_MB = 1_000_000_000
MAX_TIMEOUT_SECONDS = 30 * 86_400

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_INITIAL_DELAY = 1.0
DEFAULT_BACKOFF = 2.0
DEFAULT_CPU_UNITS = 1
DEFAULT_MEMORY_MB = 256
