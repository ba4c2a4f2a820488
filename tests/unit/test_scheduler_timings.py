"""The pass timings the scheduler logs: phases measured between marks, summarised, reset."""

from __future__ import annotations

from scheduler.timings import PassTimings


def test_phases_are_the_time_between_marks() -> None:
    now = [0.0]
    timings = PassTimings(clock=lambda: now[0])
    for decide, write in ((0.001, 0.004), (0.002, 0.006), (0.003, 0.100)):
        timings.start()
        now[0] += decide
        timings.mark("decide")
        now[0] += write
        timings.mark("write")
        timings.finish()
    figures = timings.summary()
    assert figures["passes"] == 3
    assert figures["decide_p50_ms"] == 2.0
    assert figures["write_p50_ms"] == 6.0
    assert figures["write_p99_ms"] == 100.0
    assert figures["pass_p99_ms"] == 103.0
    assert timings.summary() == {"passes": 0}  # a summary starts the next window afresh
