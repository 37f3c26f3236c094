import random

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from bench.results.recording import (
    HIGHEST_US,
    add,
    _bucket_values,
    _counts,
    _sum_of_values_us,
    IntervalRecorder,
    merged,
    new_histogram,
    read_hlog,
    summary_ms,
    write_hgrm,
    write_intervals,
)

T0 = 1_700_000_000.25  # a wall clock start with a fraction, as time.time() gives


def histogram_of(values):
    histogram = new_histogram()
    for value in values:
        histogram.record_value(value)
    return histogram


def test_percentiles_from_known_values():
    summary = summary_ms(histogram_of(range(1, 10_001)))
    assert summary["count"] == 10_000
    # 3 significant digits: each value is exact to within 0.1%.
    assert summary["p50"] == pytest.approx(5.0, rel=1e-3)
    assert summary["p90"] == pytest.approx(9.0, rel=1e-3)
    assert summary["p99"] == pytest.approx(9.9, rel=1e-3)
    assert summary["p999"] == pytest.approx(9.99, rel=1e-3)
    assert summary["max"] == pytest.approx(10.0, rel=1e-3)
    assert summary["mean"] == pytest.approx(5.0, rel=1e-3)
    assert all(isinstance(summary[key], float) for key in ("p50", "p90", "p99", "p999", "max", "mean"))


def test_empty_summary():
    assert summary_ms(new_histogram()) == {
        "p50": None, "p90": None, "p99": None, "p999": None, "max": None, "mean": None, "count": 0,
    }


def test_recorder_hlog_round_trip_through_hdrh_reader(tmp_path):
    path = tmp_path / "e2e.hlog"
    recorder = IntervalRecorder("e2e", path, T0)
    counts = [100, 0, 250]
    for second, count in enumerate(counts):
        for i in range(count):
            recorder.record_us(1000 * (second + 1) + i)
        recorder.roll(T0 + second + 1)
    recorder.close(T0 + 4)

    # Straight through hdrh's own reader, as an outside tool would.
    reader = HistogramLogReader(str(path), new_histogram())
    read = []
    while (histogram := reader.get_next_interval_histogram()) is not None:
        read.append(histogram)
    reader.close()
    assert [h.get_total_count() for h in read] == counts + [0]
    assert reader.get_start_time_sec() == pytest.approx(T0, abs=1e-3)
    starts = [h.get_start_time_stamp() / 1000 for h in read]
    lengths = [(h.get_end_time_stamp() - h.get_start_time_stamp()) / 1000 for h in read]
    assert starts == pytest.approx([T0 + i for i in range(4)], abs=1e-3)
    assert lengths == pytest.approx([1.0] * 4, abs=1e-3)

    assert [h.get_total_count() for h in read_hlog(path)] == counts + [0]
    assert summary_ms(merged(read_hlog(path))) == summary_ms(recorder.total)
    assert recorder.total.get_total_count() == sum(counts)


def test_hlog_header_is_standard(tmp_path):
    path = tmp_path / "x.hlog"
    IntervalRecorder("x", path, T0).close(T0 + 1)
    lines = path.read_text().splitlines()
    assert lines[1] == "#[Histogram log format version 1.2]"
    assert lines[2].startswith("#[StartTime: 1700000000.250 (seconds since epoch), ")
    assert lines[3].startswith("#[BaseTime: 1700000000.250")
    assert lines[4] == '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'
    assert lines[5].startswith("0.000,1.000,0.000,HISTF")


def test_roll_returns_the_finished_interval_and_starts_a_new_one(tmp_path):
    recorder = IntervalRecorder("r", tmp_path / "r.hlog", T0)
    recorder.record_us(2000)
    finished = recorder.roll(T0 + 1)
    recorder.record_us(3000)
    assert finished.get_total_count() == 1
    assert summary_ms(finished)["p99"] == pytest.approx(2.0, rel=1e-3)
    recorder.close(T0 + 2)
    recorder.close()  # idempotent
    assert recorder.total.get_total_count() == 2
    with pytest.raises(ValueError, match="closed"):
        recorder.roll(T0 + 3)


def test_interrupted_recorder_leaves_readable_intervals(tmp_path):
    path = tmp_path / "r.hlog"
    recorder = IntervalRecorder("r", path, T0)
    recorder.record_us(5)
    recorder.roll(T0 + 1)
    recorder.record_us(6)  # never rolled: the process "dies" here
    assert [h.get_total_count() for h in read_hlog(path)] == [1]
    recorder.close(T0 + 2)


def test_clamping_counts_instead_of_dropping(tmp_path):
    with IntervalRecorder("c", tmp_path / "c.hlog", T0) as recorder:
        recorder.record_us(HIGHEST_US * 10)
        recorder.record_us(-5)
        recorder.record_us(42)
        interval = recorder.roll(T0 + 1)
    assert recorder.clamped == 2
    assert interval.get_total_count() == 3
    assert interval.get_max_value() >= HIGHEST_US
    assert interval.get_min_value() == 0


def test_write_intervals_round_trip(tmp_path):
    path = tmp_path / "step.hlog"
    a, b = histogram_of([10, 20, 30]), histogram_of(range(1, 501))
    write_intervals(path, [(0.0, 1.0, a), (1.0, 2.5, new_histogram()), (2.5, 3.5, b)], T0, name="payment")
    read = read_hlog(path)
    assert [h.get_total_count() for h in read] == [3, 0, 500]
    assert [h.get_start_time_stamp() / 1000 - T0 for h in read] == pytest.approx([0.0, 1.0, 2.5], abs=1e-3)
    assert [(h.get_end_time_stamp() - h.get_start_time_stamp()) / 1000 for h in read] == pytest.approx([1.0, 1.5, 1.0], abs=1e-3)
    assert read[2].get_value_at_percentile(50) == b.get_value_at_percentile(50)
    with pytest.raises(ValueError, match="0 <= start_s <= end_s"):
        write_intervals(tmp_path / "bad.hlog", [(2.0, 1.0, a)], T0)


def test_merged_adds_counts_and_ignores_empties():
    a, b = histogram_of([100, 200]), histogram_of([300])
    total = merged([a, new_histogram(), b])
    assert total.get_total_count() == 3
    assert total.get_min_value() == 100  # an empty interval must not pull min to 0
    assert a.get_total_count() == 2
    assert merged([]).get_total_count() == 0


def test_hgrm_is_standard_and_in_milliseconds(tmp_path):
    path = tmp_path / "e2e.hgrm"
    write_hgrm(histogram_of(range(1, 10_001)), path)
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0].split() == ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    first = lines[2].split()
    assert float(first[0]) == pytest.approx(0.001) and float(first[1]) == 0.0
    last = [line for line in lines if line.strip() and not line.startswith("#")][-1].split()
    assert float(last[0]) == pytest.approx(10.0, rel=1e-3) and float(last[1]) == 1.0 and int(last[2]) == 10_000
    mean_line = next(line for line in lines if line.startswith("#[Mean"))
    stddev_ms = float(mean_line.split("StdDeviation   =")[1].rstrip("]"))
    assert stddev_ms == pytest.approx(2.887, rel=1e-2)  # scaled to ms like the mean, unlike raw hdrh
    assert "#[Max     =       10.007, Total count    =        10000]" in lines
    assert lines[-1].startswith("#[Buckets =")


def test_hgrm_of_empty_histogram(tmp_path):
    path = tmp_path / "empty.hgrm"
    write_hgrm(new_histogram(), path)
    assert "#[Max     =        0.000, Total count    =            0]" in path.read_text()


def test_decoded_histograms_merge_with_fresh_ones():
    decoded = HdrHistogram.decode(histogram_of([7, 8, 9]).encode())
    assert merged([decoded, histogram_of([10])]).get_total_count() == 4


# The numpy paths must give hdrh's own answers exactly; these compare them with hdrh's slow methods.

def _random_values(kind, rng, n=20_000):
    if kind == "uniform":
        return [rng.randint(1, 10_000) for _ in range(n)]
    if kind == "lognormal":
        return [min(round(rng.lognormvariate(7, 2)), HIGHEST_US) for _ in range(n)]
    if kind == "log_uniform_whole_range":
        return [round(10 ** rng.uniform(0, 9.556)) for _ in range(n)]
    if kind == "bounds_and_zeros":
        return [rng.choice((0, 0, 1, 2047, 2048, HIGHEST_US)) for _ in range(n)]
    if kind == "bimodal":
        return [rng.choice((rng.randint(50, 150), rng.randint(10**8, 10**8 + 10**6))) for _ in range(n)]
    if kind == "constant":
        return [777] * 1000
    if kind == "single":
        return [12_345]
    sizes = {"two": 2, "five": 5, "n999": 999, "n1000": 1000, "n1001": 1001}
    return [rng.randint(1, 5000) for _ in range(sizes[kind])]


KINDS = ["uniform", "lognormal", "log_uniform_whole_range", "bounds_and_zeros", "bimodal",
         "constant", "single", "two", "five", "n999", "n1000", "n1001"]


def _slow_summary_ms(histogram):
    """summary_ms as it was, from hdrh's pure-Python methods."""
    if not histogram.get_total_count():
        return summary_ms(histogram)
    percentiles = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}
    values_us = histogram.get_percentile_to_value_dict(list(percentiles.values()))
    out = {key: round(values_us[p] / 1000, 3) for key, p in percentiles.items()}
    out["max"] = round(histogram.get_max_value() / 1000, 3)
    out["mean"] = round(histogram.get_mean_value() / 1000, 3)
    out["count"] = histogram.get_total_count()
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_summary_equals_hdrh_slow_methods(kind):
    histogram = histogram_of(_random_values(kind, random.Random(kind)))
    assert summary_ms(histogram) == _slow_summary_ms(histogram)
    # Unrounded too: every percentile hdrh would report, and the exact mean.
    highest_us, median_us = _bucket_values(histogram)
    cumulative = np.cumsum(_counts(histogram))
    for percentile in (0.1, 1, 25, 50, 75, 90, 99, 99.9, 99.99, 99.999, 100):
        target = histogram.get_target_count_at_percentile(percentile)
        assert int(highest_us[np.searchsorted(cumulative, target)]) == histogram.get_value_at_percentile(percentile)
    count = histogram.get_total_count()
    assert _sum_of_values_us(_counts(histogram), median_us, count) / count == histogram.get_mean_value()


def test_summary_of_decoded_histogram_equals_hdrh():
    histogram = HdrHistogram.decode(histogram_of(_random_values("lognormal", random.Random(3))).encode())
    assert summary_ms(histogram) == _slow_summary_ms(histogram)


def test_mean_stays_exact_past_uint64():
    histogram = new_histogram()
    histogram.record_value(HIGHEST_US, 2**40)  # counts * values overflow uint64
    histogram.record_value(3, 2**40 + 1)
    assert summary_ms(histogram) == _slow_summary_ms(histogram)
    count = histogram.get_total_count()
    _, median_us = _bucket_values(histogram)
    assert _sum_of_values_us(_counts(histogram), median_us, count) / count == histogram.get_mean_value()


def test_bucket_values_equal_hdrh_for_every_index():
    histogram = new_histogram()
    highest_us, median_us = _bucket_values(histogram)
    assert len(highest_us) == histogram.counts_len
    for index in range(histogram.counts_len):
        value = histogram.get_value_from_index(index)
        assert int(highest_us[index]) == histogram.get_highest_equivalent_value(value)
        assert int(median_us[index]) == histogram._hdr_median_equiv_value(value)
    assert _bucket_values(new_histogram()) is _bucket_values(histogram)  # computed once per layout


def test_counts_is_a_view_of_hdrh_counts():
    histogram = new_histogram()
    counts = _counts(histogram)
    assert counts.dtype.itemsize == histogram.word_size and len(counts) == histogram.counts_len
    histogram.record_value(1000)
    assert counts[histogram.get_counts_array_index(1000)] == 1


def _state(histogram):
    return (
        _counts(histogram).tolist(), histogram.get_total_count(), histogram.min_value, histogram.max_value,
        histogram.get_min_value(), histogram.get_max_value(),
        histogram.get_start_time_stamp(), histogram.get_end_time_stamp(), histogram.encode(),
    )


def test_add_equals_hdrh_add():
    rng = random.Random(7)
    intervals = [histogram_of(_random_values(kind, rng, n=2000)) for kind in KINDS]
    intervals += [new_histogram(), HdrHistogram.decode(intervals[1].encode()), histogram_of([0])]
    for i, histogram in enumerate(intervals):
        histogram.set_start_time_stamp(1000.0 * (50 - i))
        histogram.set_end_time_stamp(1000.0 * (51 + i))
    rng.shuffle(intervals)
    fast, slow = new_histogram(), new_histogram()
    for histogram in intervals:
        add(fast, histogram)
        if histogram.get_total_count():
            slow.add(histogram)
        assert _state(fast) == _state(slow)
    assert summary_ms(fast) == _slow_summary_ms(slow)


def test_add_of_other_layout_falls_back_to_hdrh():
    coarse = HdrHistogram(1, 1_000_000, 2)
    for value in (5, 500, 50_000):
        coarse.record_value(value)
    total = histogram_of([7])
    add(total, coarse)
    assert total.get_total_count() == 4
    assert summary_ms(total) == _slow_summary_ms(total)
