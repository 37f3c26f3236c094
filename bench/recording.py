"""Latency recording: HdrHistograms of MICROSECONDS, stored whole.

Interval logs (``.hlog``) follow HdrHistogram's log format, readable by
hdrh's ``HistogramLogReader`` and by HdrHistogram Java's ``HistogramLogProcessor``
(pass ``-outputValueUnitRatio 1000`` there to see milliseconds). Interval
timestamps are seconds relative to the log's base time, which is the run's start
on the wall clock.
"""
from __future__ import annotations

import io
import math
import re
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader, HistogramLogWriter

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour
SIGNIFICANT_DIGITS = 3
US_PER_MS = 1000.0


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


def _add(total: HdrHistogram, interval: HdrHistogram) -> None:
    # hdrh's add() takes an empty histogram's min (0) as real and corrupts the total's min.
    if interval.get_total_count():
        total.add(interval)


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
        self._log: TextIO | None
        self._log, self._writer = _open_log(self.path, name, start_wall_s)

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
        finished.set_start_time_stamp(self._interval_start_s * 1000.0)
        finished.set_end_time_stamp(now_wall_s * 1000.0)
        self._writer.output_interval_histogram(
            finished, self._interval_start_s - self._start_wall_s, now_wall_s - self._start_wall_s
        )
        self._log.flush()  # an interrupted run still leaves every finished interval on disk
        _add(self._total, finished)
        # A fresh histogram is ~20x cheaper than hdrh's reset(), and lets the caller keep this one.
        self._interval = new_histogram()
        self._interval_start_s = now_wall_s
        return finished

    @property
    def total(self) -> HdrHistogram:
        """Everything recorded in rolled intervals (the current interval is not included)."""
        return self._total

    def close(self, now_wall_s: float | None = None) -> None:
        """Roll the last interval (ending now, unless given) and close the log. Idempotent."""
        if self._log is None:
            return
        self.roll(now_wall_s if now_wall_s is not None else time.time())
        self._log.close()
        self._log = None

    def __enter__(self) -> IntervalRecorder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
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


def read_hlog(path: str | Path) -> list[HdrHistogram]:
    """The interval histograms of an ``.hlog``, in file order, with absolute
    start/end timestamps (msec since the epoch) as HdrHistogram sets them."""
    reader = HistogramLogReader(str(path), new_histogram())
    try:
        intervals = []
        # -inf: the reader silently skips intervals whose offset from StartTime is
        # below the range start, and float rounding can put the first one at -1e-9.
        while (histogram := reader.get_next_interval_histogram(range_start_time_sec=-math.inf)) is not None:
            intervals.append(histogram)
        return intervals
    finally:
        reader.close()


def merged(histograms: Sequence[HdrHistogram]) -> HdrHistogram:
    """One histogram holding every value of ``histograms`` (which are not changed)."""
    total = new_histogram()
    for histogram in histograms:
        _add(total, histogram)
    if histograms:
        total.set_start_time_stamp(min(h.get_start_time_stamp() for h in histograms))
        total.set_end_time_stamp(max(h.get_end_time_stamp() for h in histograms))
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
    An empty histogram gives None for every value and count 0."""
    count = histogram.get_total_count()
    if not count:
        return {**dict.fromkeys((*_PERCENTILES, "max", "mean")), "count": 0}
    values_us = histogram.get_percentile_to_value_dict(list(_PERCENTILES.values()))
    out: dict[str, Any] = {key: _ms(values_us[p]) for key, p in _PERCENTILES.items()}
    out["max"] = _ms(histogram.get_max_value())
    out["mean"] = _ms(histogram.get_mean_value())
    out["count"] = int(count)
    return out


def _ms(value_us: float) -> float:
    return round(value_us / US_PER_MS, 3)
