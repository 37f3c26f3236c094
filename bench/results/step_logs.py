"""Per-step latency histograms, built after the run from the audit's reading of every topic."""
from __future__ import annotations

from pathlib import Path

from bench.results.measurement import LoadResult
from bench.results.recording import HIGHEST_US, merged, new_histogram, summary_ms, write_intervals
from bench.flow.saga import E2E


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
        write_intervals(out / f"step-{step}.hlog", ordered, load.start_wall_s, name=step)
        summaries[step] = summary_ms(merged([h for _, _, h in ordered])) if ordered else summary_ms(new_histogram())
    return summaries
