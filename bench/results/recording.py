"""Latency recording: HdrHistograms of MICROSECONDS, stored whole.

Interval logs (``.hlog``) follow HdrHistogram's log format, readable by
hdrh's ``HistogramLogReader`` and by HdrHistogram Java's ``HistogramLogProcessor``
(pass ``-outputValueUnitRatio 1000`` there to see milliseconds). Interval
timestamps are seconds relative to the log's base time, which is the run's start
on the wall clock.
"""
from __future__ import annotations

import functools
import io
import math
import re
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader, HistogramLogWriter

from bench.flow.saga import E2E

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour
SIGNIFICANT_DIGITS = 3
US_PER_MS = 1000.0

# A result directory holds each histogram twice: ``<name>.hlog`` (its intervals, one a second)
# and ``<name>.hgrm`` (the measured total's percentile distribution). The load generator
# records these four; each step's is ``step-<step>``, from the audit (real) or the model.
E2E_COMPLETED, E2E_CANCELLED, SLIP = "e2e-completed", "e2e-cancelled", "slip"
LOAD_HISTOGRAMS = (E2E, E2E_COMPLETED, E2E_CANCELLED, SLIP)
HLOG, HGRM = ".hlog", ".hgrm"


def hlog_file(name: str) -> str:
    """The interval log of histogram ``name`` in a result directory."""
    return f"{name}{HLOG}"


def hgrm_file(name: str) -> str:
    """The percentile distribution of histogram ``name`` in a result directory."""
    return f"{name}{HGRM}"


def step_histogram(step: str) -> str:
    """The histogram name of a step's latency (its file: ``hlog_file(step_histogram(step))``)."""
    return f"step-{step}"


E2E_HLOG = hlog_file(E2E)


def new_histogram() -> HdrHistogram:
    """An empty histogram for values in microseconds, 1 us .. 1 h, 3 significant digits."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


class _LogWriter(HistogramLogWriter):
    """hdrh's writer, corrected where hdrh 0.10 departs from the Java format:
    its ``output_start_time`` crashes (it formats msec as seconds with a missing
    method), its interval max is floored, and a 0.0 start is taken as "unset"."""

    def output_start_time(self, start_time_msec: float) -> None:
        when = datetime.fromtimestamp(start_time_msec / 1000.0, timezone.utc).isoformat(" ", "milliseconds")
        self.log.write(f"#[StartTime: {start_time_msec / 1000.0:.3f} (seconds since epoch), {when}]\n")

    def output_interval_histogram(
        self,
        histogram: HdrHistogram,
        start_time_stamp_sec: float = 0.0,
        end_time_stamp_sec: float = 0.0,
        max_value_unit_ratio: float = US_PER_MS,
    ) -> None:
        max_value = histogram.get_max_value() / max_value_unit_ratio
        payload = histogram.encode().decode("ascii")
        length_s = end_time_stamp_sec - start_time_stamp_sec
        self.log.write(f"{start_time_stamp_sec:.3f},{length_s:.3f},{max_value:.3f},{payload}\n")


def _open_log(path: Path, name: str, start_wall_s: float) -> tuple[TextIO, _LogWriter]:
    log = path.open("w", encoding="utf-8")
    writer = _LogWriter(log)
    writer.output_comment(f"[bench {name}: latency in microseconds; interval max in milliseconds]")
    writer.output_log_format_version()
    writer.output_start_time(start_wall_s * 1000.0)
    writer.output_base_time(start_wall_s * 1000.0)
    writer.output_legend()
    log.flush()
    return log, writer


def _counts(histogram: HdrHistogram) -> np.ndarray:
    """A numpy view (not a copy) of hdrh's ctypes counts array; its dtype follows the word size."""
    return np.ctypeslib.as_array(histogram.counts)


def _same_layout(a: HdrHistogram, b: HdrHistogram) -> bool:
    # hdrh's own test for adding the counts arrays index by index.
    return (a.bucket_count, a.sub_bucket_count, a.unit_magnitude, a.word_size) == (
        b.bucket_count, b.sub_bucket_count, b.unit_magnitude, b.word_size
    )


def add(total: HdrHistogram, interval: HdrHistogram) -> None:
    """Adds ``interval``'s counts into ``total`` exactly: hdrh's ``total.add(interval)``, with the counts added by numpy (~5x faster than hdrh's C loop)
    and the same total count, min, max and timestamps kept, so encode() and output still work."""
    # hdrh's add() takes an empty histogram's min (0) as real and corrupts the total's min.
    if not interval.get_total_count():
        return
    if not _same_layout(total, interval):
        total.add(interval)
        return
    counts = _counts(total)
    np.add(counts, _counts(interval), out=counts)
    total.total_count += interval.get_total_count()
    total.max_value = max(total.max_value, interval.get_max_value())
    total.min_value = min(total.get_min_value(), interval.get_min_value())  # after total_count, as hdrh
    total.start_time_stamp_msec = min(total.start_time_stamp_msec, interval.start_time_stamp_msec)
    total.end_time_stamp_msec = max(total.end_time_stamp_msec, interval.end_time_stamp_msec)


class IntervalLog:
    """An ``.hlog`` written one interval at a time: the recorder's, the step logs', the sums of
    load workers' intervals."""

    def __init__(self, path: str | Path, name: str, start_wall_s: float) -> None:
        self._log, self._writer = _open_log(Path(path), name, start_wall_s)
        self._start_wall_s = start_wall_s

    def write(self, histogram: HdrHistogram, start_s: float, end_s: float) -> None:
        """``start_s`` and ``end_s`` in seconds from the log's start; stamps the histogram with them."""
        histogram.set_start_time_stamp((self._start_wall_s + start_s) * 1000.0)
        histogram.set_end_time_stamp((self._start_wall_s + end_s) * 1000.0)
        self._writer.output_interval_histogram(histogram, start_s, end_s)
        self._log.flush()

    def close(self) -> None:
        self._log.close()


class IntervalRecorder:
    """Records latencies in microseconds; each :meth:`roll` appends the current
    interval to an ``.hlog`` file and starts a new one. Roll once a second for
    1 s intervals. Not thread-safe: one recorder per recording thread."""

    def __init__(self, name: str, path: str | Path, start_wall_s: float) -> None:
        """``start_wall_s``: wall clock (``time.time()``) when the first interval starts;
        it is the log's start and base time."""
        self.name = name
        self.path = Path(path)
        self.clamped = 0  # values outside 0 .. HIGHEST_US, recorded at the nearest bound
        self._start_wall_s = start_wall_s
        self._interval_start_s = start_wall_s
        self._interval = new_histogram()
        self._total = new_histogram()
        self._log: IntervalLog | None = IntervalLog(self.path, name, start_wall_s)

    def record_us(self, value_us: float) -> None:
        value = round(value_us)
        if not 0 <= value <= HIGHEST_US:
            # A latency past the range is a real (terrible) outcome: keep it, at the bound.
            self.clamped += 1
            value = min(max(value, 0), HIGHEST_US)
        self._interval.record_value(value)

    def roll(self, now_wall_s: float) -> HdrHistogram:
        """Write the interval ending at ``now_wall_s`` (wall clock seconds), add it to
        :attr:`total`, start a new interval, and return the finished one."""
        if self._log is None:
            raise ValueError(f"{self.path}: recorder is closed")
        finished = self._interval
        # Flushed as written: an interrupted run still leaves every finished interval on disk.
        self._log.write(finished, self._interval_start_s - self._start_wall_s, now_wall_s - self._start_wall_s)
        add(self._total, finished)
        # A fresh histogram is ~20x cheaper than hdrh's reset(), and lets the caller keep this one.
        self._interval = new_histogram()
        self._interval_start_s = now_wall_s
        return finished

    @property
    def total(self) -> HdrHistogram:
        """Everything recorded in rolled intervals (the current interval is not included)."""
        return self._total

    def close(self, now_wall_s: float | None = None) -> HdrHistogram | None:
        """Roll the last interval (ending now, unless given), close the log and return that interval
        (None when closed already)."""
        if self._log is None:
            return None
        last = self.roll(now_wall_s if now_wall_s is not None else time.time())
        self._log.close()
        self._log = None
        return last

    def __enter__(self) -> IntervalRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_intervals(
    path: str | Path,
    intervals: Iterable[tuple[float, float, HdrHistogram]],
    start_wall_s: float,
    name: str = "intervals",
) -> None:
    """Write an ``.hlog`` post hoc. Each interval is ``(start_s, end_s, histogram)`` with
    start and end in seconds *relative to* ``start_wall_s`` (the run's wall-clock start)."""
    log, writer = _open_log(Path(path), name, start_wall_s)
    with log:
        for start_s, end_s, histogram in intervals:
            if not 0 <= start_s <= end_s:
                raise ValueError(f"{path}: interval ({start_s}, {end_s}) must satisfy 0 <= start_s <= end_s")
            writer.output_interval_histogram(histogram, start_s, end_s)


def iter_hlog(path: str | Path) -> Iterator[HdrHistogram]:
    """The interval histograms of an ``.hlog`` one at a time, in file order, with absolute
    start/end timestamps (msec since the epoch) as HdrHistogram sets them. An interval is
    188 KB in memory: a run's log (one a second) is read this way, never all at once."""
    reader = HistogramLogReader(str(path), new_histogram())
    try:
        # -inf: the reader silently skips intervals whose offset from StartTime is
        # below the range start, and float rounding can put the first one at -1e-9.
        while (histogram := reader.get_next_interval_histogram(range_start_time_sec=-math.inf)) is not None:
            yield histogram
    finally:
        reader.close()


def read_hlog(path: str | Path) -> list[HdrHistogram]:
    """Every interval of an ``.hlog`` at once (short logs: a comparison's, a test's)."""
    return list(iter_hlog(path))


def merged(histograms: Iterable[HdrHistogram]) -> HdrHistogram:
    """One histogram holding every value of ``histograms`` (which are not changed; taken one at a
    time, so a generator over a long log holds one interval at a time)."""
    total = new_histogram()
    starts, ends = [], []
    for histogram in histograms:
        add(total, histogram)
        starts.append(histogram.get_start_time_stamp())
        ends.append(histogram.get_end_time_stamp())
    if starts:
        total.set_start_time_stamp(min(starts))
        total.set_end_time_stamp(max(ends))
    return total


def write_hgrm(histogram: HdrHistogram, path: str | Path) -> None:
    """Write the percentile distribution in the standard ``.hgrm`` format, values in ms."""
    table = io.BytesIO()
    histogram.output_percentile_distribution(table, US_PER_MS)
    Path(path).write_text(_java_footer(table.getvalue().decode("ascii"), histogram), encoding="ascii")


_FOOTER = re.compile(r"^#\[(Mean|Max) .*\n", re.MULTILINE)


def _java_footer(text: str, histogram: HdrHistogram) -> str:
    """Replace hdrh's Mean/Max footer lines with HdrHistogram Java's: hdrh leaves
    the standard deviation unscaled (us next to ms) and prints the count as a float."""
    digits = histogram.significant_figures
    count = histogram.get_total_count()
    lines = {
        "Mean": f"#[Mean    = {histogram.get_mean_value() / US_PER_MS:12.{digits}f}, "
        f"StdDeviation   = {histogram.get_stddev() / US_PER_MS:12.{digits}f}]\n",
        "Max": f"#[Max     = {histogram.get_max_value() / US_PER_MS:12.{digits}f}, Total count    = {count:12d}]\n",
    }
    return _FOOTER.sub(lambda match: lines[match[1]], text)


_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


def summary_ms(histogram: HdrHistogram) -> dict[str, Any]:
    """p50, p90, p99, p999, max and mean in milliseconds (3 decimals), and count.
    An empty histogram gives None for every value and count 0. Values equal hdrh's
    ``get_percentile_to_value_dict``, ``get_max_value`` and ``get_mean_value``, computed
    with numpy: hdrh loops over all ~23,000 buckets in Python (~50 ms, holding the GIL)."""
    count = histogram.get_total_count()
    if not count:
        return {**dict.fromkeys((*_PERCENTILES, "max", "mean")), "count": 0}
    highest_us, median_us = _bucket_values(histogram)
    counts = _counts(histogram)
    cumulative = np.cumsum(counts)
    targets = [histogram.get_target_count_at_percentile(p) for p in _PERCENTILES.values()]
    at = np.searchsorted(cumulative, targets)  # first bucket whose cumulative count reaches the target
    out: dict[str, Any] = {key: _ms(int(highest_us[i])) for key, i in zip(_PERCENTILES, at)}
    out["max"] = _ms(histogram.get_max_value())
    out["mean"] = _ms(_sum_of_values_us(counts, median_us, int(cumulative[-1])) / count)
    out["count"] = int(count)
    return out


def _bucket_values(histogram: HdrHistogram) -> tuple[np.ndarray, np.ndarray]:
    """Highest- and median-equivalent value (as uint64) of each counts index of ``histogram``."""
    return _bucket_values_of(histogram.unit_magnitude, histogram.sub_bucket_half_count_magnitude, histogram.counts_len)


@functools.cache
def _bucket_values_of(unit_magnitude: int, half_count_magnitude: int, counts_len: int) -> tuple[np.ndarray, np.ndarray]:
    # hdrh's get_value_from_index, get_highest_equivalent_value and _hdr_median_equiv_value, vectorized.
    index = np.arange(counts_len, dtype=np.int64)
    half_count = 1 << half_count_magnitude
    bucket = np.maximum((index >> half_count_magnitude) - 1, 0)
    sub_bucket = np.where(index < half_count, index, (index & (half_count - 1)) + half_count)
    lowest = sub_bucket << (bucket + unit_magnitude)
    size = np.int64(1) << (bucket + unit_magnitude)
    highest, median = (lowest + size - 1).astype(np.uint64), (lowest + (size >> 1)).astype(np.uint64)
    highest.flags.writeable = median.flags.writeable = False  # shared by every histogram of this layout
    return highest, median


def _sum_of_values_us(counts: np.ndarray, values_us: np.ndarray, count: int) -> int:
    """Exact sum of ``counts * values_us``, as hdrh's mean takes it with Python ints."""
    if count * int(values_us[-1]) < 2**64:  # values grow with the index: uint64 cannot wrap
        return int(np.dot(counts.astype(np.uint64, copy=False), values_us))
    recorded = np.flatnonzero(counts)
    return sum(c * v for c, v in zip(counts[recorded].tolist(), values_us[recorded].tolist()))


def _ms(value_us: float) -> float:
    return round(value_us / US_PER_MS, 3)


def histogram_of(values_us, into: HdrHistogram | None = None) -> HdrHistogram:
    """A histogram of ``values_us`` (microseconds, rounded; out-of-range values at the nearest bound,
    as :class:`IntervalRecorder` keeps them), filled at once: the counts index of every value as
    hdrh's ``_counts_index_for`` computes it, vectorised, then one ``bincount``. ``into``: a
    histogram to empty and fill rather than a new one (a process with its cyclic collector off
    must not make hdrh's histograms, which refer to themselves, once a second)."""
    if into is None:
        histogram = new_histogram()
    else:
        histogram = into
        _counts(histogram).fill(0)  # hdrh's reset(), with the counts cleared by numpy, not a Python loop
        histogram.total_count, histogram.min_value, histogram.max_value = 0, sys.maxsize, 0
        histogram.start_time_stamp_msec, histogram.end_time_stamp_msec = sys.maxsize, 0
    values = np.clip(np.rint(np.asarray(values_us, dtype=np.float64)), 0, HIGHEST_US).astype(np.int64)
    if len(values) == 0:
        return histogram
    # bit length of (value | sub_bucket_mask); exact in float64 for values below 2**53.
    bit_length = np.frexp((values | histogram.sub_bucket_mask).astype(np.float64))[1].astype(np.int64)
    bucket = bit_length - histogram.unit_magnitude - (histogram.sub_bucket_half_count_magnitude + 1)
    sub_bucket = values >> (bucket + histogram.unit_magnitude)
    index = ((bucket + 1) << histogram.sub_bucket_half_count_magnitude) + sub_bucket - histogram.sub_bucket_half_count
    counts = _counts(histogram)
    counts += np.bincount(index, minlength=histogram.counts_len)[: histogram.counts_len].astype(counts.dtype)
    histogram.total_count = int(len(values))
    histogram.min_value = int(values.min())
    histogram.max_value = int(values.max())
    return histogram


def window_summary(intervals: Iterable[HdrHistogram], lo_wall_s: float, hi_wall_s: float) -> dict:
    """The summary in ms of the intervals that start in [lo_wall_s, hi_wall_s) (their wall-clock
    labels, as the log stores them); {} when none does."""
    total, chosen = new_histogram(), 0
    for histogram in intervals:
        if lo_wall_s <= histogram.get_start_time_stamp() / 1000 < hi_wall_s:
            add(total, histogram)
            chosen += 1
    return summary_ms(total) if chosen else {}
