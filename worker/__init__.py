"""The worker process: runs dispatched jobs on threads and its event loop."""
