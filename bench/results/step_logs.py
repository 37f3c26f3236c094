"""Per-step latency histograms: ``step-<name>.hlog``, written here for real runs (from the
audit's reading of every topic) and simulated ones (:mod:`bench.sim.output`)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hdrh.histogram import HdrHistogram

from bench.results.measurement import LoadResult
from bench.results.recording import (HIGHEST_US, hlog_file, merged, new_histogram, step_histogram, summary_ms,
                                     write_intervals)
from bench.flow.saga import E2E


def write_step_log(out: Path, step: str, intervals: Sequence[tuple[float, float, HdrHistogram]],
                   start_wall_s: float) -> dict:
    """Write one step's ``step-<name>.hlog`` from its non-empty ``(start_s, end_s, histogram)``
    intervals; returns the step's summary in ms (all zero counts when it has none)."""
    write_intervals(out / hlog_file(step_histogram(step)), intervals, start_wall_s, name=step)
    return summary_ms(merged([h for _, _, h in intervals]) if intervals else new_histogram())


def write_step_logs(out: Path, latencies: dict[str, list[tuple[float, int]]], load: LoadResult) -> dict[str, dict]:
    """Write ``step-<name>.hlog`` (1 s intervals) per step; returns each step's summary in ms.

    Only steps that ended inside the measurement window count, as for end-to-end latency.
    """
    summaries = {}
    for step, samples in latencies.items():
        if step == E2E:
            continue  # the load generator measures end-to-end itself, on one clock
        intervals: dict[int, object] = {}
        for end_s, latency_us in samples:
            if not load.measure_start_s <= end_s < load.measure_end_s:
                continue
            second = int(end_s - load.start_s)
            hist = intervals.get(second)
            if hist is None:
                hist = intervals[second] = new_histogram()
            hist.record_value(min(max(latency_us, 0), HIGHEST_US))
        ordered = [(s, s + 1, intervals[s]) for s in sorted(intervals)]
        summaries[step] = write_step_log(out, step, ordered, load.start_wall_s)
    return summaries
