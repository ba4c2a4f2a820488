"""The Python SDK: :class:`Client` (sync) and :class:`AsyncClient`, the same methods.

::

    import smartq

    with smartq.Client() as client:          # SMARTQ_URL, SMARTQ_API_KEY
        job = client.submit("sleep", {"seconds": 1}, priority="high")
        print(job.result(timeout=30))
"""

from smartq.client.aio import AsyncClient
from smartq.client.answers import RetryPolicy
from smartq.client.batch import AsyncBatch, Batch, BatchReport, Ref
from smartq.client.events import Event, LogLine, StatusEvent, StreamEvent
from smartq.client.job import AsyncJob, Explanation, Job
from smartq.client.stream import AsyncStream, Stream
from smartq.client.sync import Client
from smartq.errors import (
    APIError,
    Conflict,
    Forbidden,
    JobCancelled,
    JobFailed,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    Unreachable,
    WaitTimeout,
)

__all__ = [
    "APIError",
    "AsyncBatch",
    "AsyncClient",
    "AsyncJob",
    "AsyncStream",
    "Batch",
    "BatchReport",
    "Client",
    "Conflict",
    "Event",
    "Explanation",
    "Forbidden",
    "Job",
    "JobCancelled",
    "JobFailed",
    "LogLine",
    "NotFound",
    "RateLimited",
    "Ref",
    "RetryPolicy",
    "StatusEvent",
    "Stream",
    "StreamEvent",
    "Unauthorized",
    "Unavailable",
    "Unreachable",
    "WaitTimeout",
]
