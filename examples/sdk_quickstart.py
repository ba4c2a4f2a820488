"""The SDK in thirty lines: one job, then a small DAG, waited for and reported.

    ./scripts/dev &                      # a local smartq (no key needed on loopback)
    python examples/sdk_quickstart.py    # elsewhere: SMARTQ_URL=... SMARTQ_API_KEY=sq_...

The job types are smartq's built-in ones; a ``@smartq.job`` function can be submitted the
same way (``client.submit(thumbnail, {...})``). tests/e2e/test_sdk_processes.py runs this file.
"""

from __future__ import annotations

import smartq


def main() -> int:
    with smartq.Client() as client:  # SMARTQ_URL (default http://127.0.0.1:8000), SMARTQ_API_KEY
        job = client.submit("sleep", {"seconds": 0.2}, priority="high")
        print(f"job {job.id}: {job.result(timeout=60)}")

        with client.batch(name="quickstart") as dag:  # submitted at once on leaving the block
            extract = dag.add("log", {"lines": 3})
            clean = dag.add("flaky", {"fail_times": 1}, after=[extract], retry=3)
            dag.add("sleep", {"seconds": 0.2}, after=[extract, clean], cpu_units=2)
        for done in dag.as_completed(timeout=60):
            print(f"  {done.key}: {done.status} after {done.attempts} attempt(s)")
        for line in dag.job(extract).logs():
            print(f"  [{line.level}] {line.message}")

        report = dag.wait(timeout=60)
        completed, took = report.totals["completed"], report.duration_seconds or 0.0
        print(f"batch {dag.id}: {completed}/{report.job_count} completed in {took:.2f}s")
        return 0 if report.succeeded else 1


if __name__ == "__main__":
    raise SystemExit(main())
