"""Per-fault figures from a run's per-second timeseries and interval histograms.

For a fault starting at ``at`` and ending at ``end`` (seconds from the start of load):

- *baseline*: the ``BASELINE_S`` seconds before ``at``: mean finished orders/s,
  and the highest per-second p99;
- *time to detect*: from ``at`` to the first second whose finished rate falls
  below 90% of baseline or whose p99 exceeds 110% of it (when the damage shows);
  None when it never does;
- *recovery*: from ``end`` to the start of the first ``STABLE_S`` consecutive
  seconds back within 10% of baseline on both (finished >= 90%, p99 <= 110%);
  None when that never happens before the run ends;
- *peak backlog*: most orders in flight from ``at`` until recovered;
- *p99 / max in the fault window*: over the interval histograms from ``at``
  until recovered (or the end of the run).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from hdrh.histogram import HdrHistogram

from bench.results.measurement import Second
from bench.results.recording import merged, summary_ms

BASELINE_S = 5
STABLE_S = 3
TOLERANCE = 0.10


def fault_figures(at_s: float, end_s: float | None, seconds: list[Second],
                  intervals: Callable[[], Iterable[tuple[float, float, HdrHistogram]]]) -> dict:
    """``intervals``: (start_s, end_s, histogram) of end-to-end latency, seconds from the start of
    load, read afresh on each call (a long run's log is streamed, not held)."""
    end_s = at_s if end_s is None else end_s
    before = [s for s in seconds if at_s - BASELINE_S <= s.t_s - 1 and s.t_s <= at_s and s.p99_ms is not None]
    if not before:
        return {"baseline": None, "note": "no measured seconds before the fault to compare against"}
    base_rate = sum(s.finished for s in before) / len(before)
    base_p99 = max(s.p99_ms for s in before)

    def healthy(s: Second) -> bool:
        return s.finished >= (1 - TOLERANCE) * base_rate and s.p99_ms is not None and s.p99_ms <= (1 + TOLERANCE) * base_p99

    after = [s for s in seconds if s.t_s > at_s]
    detect = next((s.t_s - at_s for s in after if not healthy(s)), None)
    recovered_at = None
    tail = [s for s in seconds if s.t_s > end_s]
    for i in range(len(tail) - STABLE_S + 1):
        if all(healthy(s) for s in tail[i:i + STABLE_S]):
            recovered_at = tail[i].t_s - 1  # the second's interval starts one second before its stamp
            break
    window_end = recovered_at if recovered_at is not None else (seconds[-1].t_s if seconds else end_s)
    in_window = [s for s in seconds if at_s < s.t_s <= max(window_end, end_s) + 1]
    hist = merged(h for start, stop, h in intervals() if stop > at_s and start < max(window_end, end_s) + 1)
    latency = summary_ms(hist)
    return {
        "baseline": {"finished_per_s": round(base_rate, 1), "p99_ms": base_p99},
        "time_to_detect_s": None if detect is None else round(detect, 1),
        "recovery_s": None if recovered_at is None else round(max(0.0, recovered_at - end_s), 1),
        "peak_backlog": max((s.in_flight for s in in_window), default=0),
        "p99_in_window_ms": latency["p99"],
        "max_in_window_ms": latency["max"],
    }
