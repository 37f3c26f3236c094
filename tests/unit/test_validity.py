"""Run validity and per-fault recovery figures from synthetic per-second series."""
from __future__ import annotations

from bench.results.measurement import LoadResult, Second, StartCounts
from bench.results.recording import new_histogram
from bench.run.recovery import fault_figures
from bench.results.validity import judge

RATE = 1000


def starts(start_s: float, t0s) -> StartCounts:
    counts = StartCounts(int(start_s * 1e6))
    for t0 in t0s:
        counts.add(t0)
    return counts


def load_result(finished_per_s=RATE, in_flight=lambda t: 50, seconds=40, warmup=10, interrupted=False):
    start = 1_000_000.0
    started = starts(start, (int((start + i / RATE) * 1e6) for i in range(RATE * seconds)))
    window = seconds - warmup
    return LoadResult(
        started_count=started.total, finished_count=0, start_counts=started, start_s=start, start_wall_s=start, measure_start_s=start + warmup, measure_end_s=start + seconds,
        offered_in_window=RATE * window, scheduled_in_window=RATE * window,
        finished_in_window=finished_per_s * window, send_failures=0,
        seconds=[Second(t, RATE, finished_per_s, in_flight(t), 0, 10.0, 10.0) for t in range(1, seconds + 1)],
        interrupted=interrupted)


def test_a_steady_run_is_valid():
    assert judge(load_result(), RATE, slip_p99_ms=0.5, e2e_p50_ms=20) == (True, None)


def test_finishing_too_few_orders_is_invalid_with_the_rates_named():
    valid, reason = judge(load_result(finished_per_s=900), RATE, 0.5, 20)
    assert not valid and "finished 900 orders/s" in reason


def test_a_short_run_a_few_orders_short_at_the_edge_is_valid_and_a_real_shortfall_is_not():
    def short(finished):
        start, rate, window = 1_000_000.0, 54, 4
        started = starts(start, (int((start + 1 + i / rate) * 1e6) for i in range(rate * window)))
        return LoadResult(started_count=started.total, finished_count=0, start_counts=started, start_s=start, start_wall_s=start, measure_start_s=start + 1,
                          measure_end_s=start + 1 + window, offered_in_window=rate * window,
                          scheduled_in_window=rate * window, finished_in_window=finished, send_failures=0,
                          seconds=[], interrupted=False)
    assert judge(short(210), 50, 0.5, 6) == (True, None)  # 6 short of 216: within sqrt(216) = 14.7
    valid, reason = judge(short(190), 50, 0.5, 6)
    assert not valid and "finished 48 orders/s" in reason


def test_a_growing_backlog_is_invalid():
    valid, reason = judge(load_result(in_flight=lambda t: 50 + 40 * t), RATE, 0.5, 20)
    assert not valid and "backlog kept growing" in reason


def test_a_late_load_generator_and_an_interrupted_run_are_invalid():
    assert "fell behind" in judge(load_result(), RATE, slip_p99_ms=5000, e2e_p50_ms=20)[1]
    assert judge(load_result(interrupted=True), RATE, 0.5, 20)[0] is False


def test_fault_figures_detect_recover_and_peak():
    def second(t):
        if 20 < t <= 24:  # the fault: throughput collapses, latency and backlog climb
            return Second(t, 1000, 100, 1000 * (t - 20), 0, 3000.0, 3000.0)
        if 24 < t <= 26:  # catching up
            return Second(t, 1000, 2500, 500, 0, 900.0, 900.0)
        return Second(t, 1000, 1000, 50, 0, 10.0, 10.0)

    seconds = [second(t) for t in range(1, 41)]
    intervals = []
    for t in range(40):
        h = new_histogram()
        h.record_value(3_000_000 if 20 <= t < 24 else 10_000)
        intervals.append((t, t + 1, h))
    figures = fault_figures(20.0, 22.0, seconds, lambda: iter(intervals))
    assert figures["time_to_detect_s"] == 1
    assert figures["recovery_s"] == 4  # healthy from second 27 on, i.e. 26 s: 4 s after the fault ended at 22 s
    assert figures["peak_backlog"] == 4000
    assert figures["p99_in_window_ms"] > 2900
