"""Whether a run held its rate: a run that could not is marked invalid, with the reason."""
from __future__ import annotations

import math

from bench.results.measurement import LoadResult

MIN_FRACTION = 0.99  # achieved / offered below this: the system did not keep up
# The backlog "grew" when in-flight orders rose by more than this many seconds of arrivals
# between the start and the end of the measurement window (and at least MIN_GROWTH orders).
GROWTH_S = 0.25
MIN_GROWTH = 50
EDGE_S = 5  # seconds averaged at each end of the window
MAX_SLIP_S = 1.0  # p99 schedule slip past this: the load generator itself fell behind


def judge(load: LoadResult, rate_per_s: float, slip_p99_ms: float | None,
          e2e_p50_ms: float | None = None) -> tuple[bool, str | None]:
    """(valid, reason). Rates are per second of the measurement window.

    Orders finishing inside the window were mostly started about one median
    latency earlier, so they are compared with the orders scheduled in the
    window shifted back by the median end-to-end latency: otherwise a short or
    slow run would be judged on arrival noise at the window's edges.
    """
    if load.interrupted:
        return False, "interrupted before the measurement window ended"
    window_s = load.measure_end_s - load.measure_start_s
    scheduled = load.scheduled_in_window
    if load.send_failures:
        return False, f"{load.send_failures} order-created messages could not be sent"
    if scheduled and load.offered_in_window < MIN_FRACTION * scheduled:
        return False, (f"the load generator sent {load.offered_in_window / window_s:.0f}/s of "
                       f"{scheduled / window_s:.0f}/s scheduled")
    if slip_p99_ms is not None and slip_p99_ms > MAX_SLIP_S * 1000:
        return False, f"the load generator fell behind its schedule (p99 send slip {slip_p99_ms:.0f} ms)"
    expected = _scheduled_shifted(load, (e2e_p50_ms or 0.0) / 1000)
    # Orders sent just before the window's end and finished just after it are arrival noise at
    # the edge, not a backlog: a shortfall within one Poisson standard deviation of the count is
    # allowed. Only runs under 10,000 orders feel it (above, the 1% rule is the looser); a
    # 4 s run at 50/s kept up and was marked invalid 6 orders short of 216.
    if expected and expected - load.finished_in_window > max((1 - MIN_FRACTION) * expected, math.sqrt(expected)):
        return False, (f"finished {load.finished_in_window / window_s:.0f} orders/s, below 99% of the "
                       f"{expected / window_s:.0f}/s offered")
    growth = _backlog_growth(load)
    if growth is not None:
        first, last = growth
        if last - first > max(GROWTH_S * rate_per_s, MIN_GROWTH):
            return False, f"backlog kept growing: {first:.0f} -> {last:.0f} orders in flight across the window"
    return True, None


def _scheduled_shifted(load: LoadResult, shift_s: float) -> float:
    """Orders scheduled in the window shifted back by ``shift_s``, scaled to the window's length.

    The shifted window cannot start before the load did: a saturated run's median can exceed
    the warm-up, and counting the empty time before the start would excuse it. When less than
    half a window is left, the unshifted window is used."""
    window_s = load.measure_end_s - load.measure_start_s
    lo, hi = max(load.measure_start_s - shift_s, load.start_s), load.measure_end_s - shift_s
    if hi - lo < window_s / 2:
        lo, hi = load.measure_start_s, load.measure_end_s
    inside = load.start_counts.between(lo * 1e6, hi * 1e6)
    return inside * window_s / (hi - lo)


def _backlog_growth(load: LoadResult) -> tuple[float, float] | None:
    start = load.measure_start_s - load.start_s
    end = load.measure_end_s - load.start_s
    in_window = [s.in_flight for s in load.seconds if start < s.t_s <= end]
    if len(in_window) < 2 * EDGE_S:
        return None
    return sum(in_window[:EDGE_S]) / EDGE_S, sum(in_window[-EDGE_S:]) / EDGE_S
