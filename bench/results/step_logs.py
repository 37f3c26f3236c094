"""Per-step latency histograms: ``step-<name>.hlog`` (1 s intervals) and each step's summary in ms.

:class:`StepLogs` takes spans as the audit judges orders (live, during a real run) and writes a
second's interval once no unjudged order can add to it, so it holds only the seconds still open;
:func:`write_step_logs` writes them from spans collected at once; :func:`write_step_log` writes
one step's finished intervals (a simulated run's).
"""
from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from pathlib import Path

from hdrh.histogram import HdrHistogram

from bench.results.recording import (IntervalLog, add, histogram_of, hlog_file, merged, new_histogram, step_histogram,
                                     summary_ms, write_intervals)
from bench.flow.saga import E2E


def write_step_log(out: Path, step: str, intervals: Sequence[tuple[float, float, HdrHistogram]],
                   start_wall_s: float) -> dict:
    """Write one step's ``step-<name>.hlog`` from its non-empty ``(start_s, end_s, histogram)``
    intervals; returns the step's summary in ms (all zero counts when it has none)."""
    write_intervals(out / hlog_file(step_histogram(step)), intervals, start_wall_s, name=step)
    return summary_ms(merged([h for _, _, h in intervals]) if intervals else new_histogram())


class _Sink:
    """One step's ``append((end_s, latency_us))``, as :mod:`bench.run.audit`'s span functions call it.
    The live audit calls it ~7 times per order judged: what it reads is held in its own slots."""

    __slots__ = ("logs", "open", "start_s", "measure_start_s", "measure_end_s")

    def __init__(self, logs: "StepLogs", step: str) -> None:
        self.logs, self.open = logs, logs.open[step]  # the step's open seconds (one dict for the run)
        self.start_s, self.measure_start_s, self.measure_end_s = logs.start_s, logs.measure_start_s, logs.measure_end_s

    def append(self, span: tuple[float, int]) -> None:
        end_s, latency_us = span
        if self.measure_start_s <= end_s < self.measure_end_s:
            second = int(end_s - self.start_s)
            values = self.open.get(second)
            if values is None:
                values = self.open[second] = array("q")
                logs = self.logs
                if second < logs.written_to:
                    logs.reopened += 1  # written already: this one follows as a second interval
            values.append(latency_us)


class StepLogs:
    """The run's step logs, written as the spans come. Only steps that ended inside the
    measurement window count, as for end-to-end latency. Latencies wait as 8-byte integers
    per open second (a histogram is ~188 KB), and become a histogram when their second is written."""

    def __init__(self, out: Path, steps: Iterable[str], start_s: float, start_wall_s: float,
                 measure_start_s: float, measure_end_s: float) -> None:
        self.start_s, self.measure_start_s, self.measure_end_s = start_s, measure_start_s, measure_end_s
        names = [s for s in steps if s != E2E]  # the load generator measures end-to-end itself, on one clock
        self.logs = {step: IntervalLog(out / hlog_file(step_histogram(step)), step, start_wall_s) for step in names}
        self.open: dict[str, dict[int, array]] = {step: {} for step in names}
        self.totals = {step: new_histogram() for step in names}
        self.scratch = {step: new_histogram() for step in names}  # each second's, refilled (see histogram_of)
        self.sinks = {step: _Sink(self, step) for step in names}
        self.sinks[E2E] = _Ignore()
        self.written_to = 0  # every second below this was written (later spans reopen it)
        self.reopened = 0

    def flush(self, before_s: float | None = None) -> None:
        """Write every open second that ends by ``before_s`` (monotonic seconds; None: all)."""
        limit = None if before_s is None else int(before_s - self.start_s)  # seconds k with k + 1 <= ...
        for step, open_ in self.open.items():
            due = sorted(k for k in open_ if limit is None or k + 1 <= limit)
            if not due:
                continue
            for k in due:
                histogram = histogram_of(open_.pop(k), into=self.scratch[step])
                self.logs[step].write(histogram, k, k + 1)
                add(self.totals[step], histogram)
        if limit is not None:
            self.written_to = max(self.written_to, limit)

    def open_seconds(self) -> int:
        return sum(len(open_) for open_ in self.open.values())

    def close(self) -> dict[str, dict]:
        """Write what is left; returns each step's summary in ms."""
        self.flush()
        for log in self.logs.values():
            log.close()
        return {step: summary_ms(total) for step, total in self.totals.items()}


class _Ignore:
    __slots__ = ()

    def append(self, span) -> None:
        pass


def write_step_logs(out: Path, latencies: dict[str, list[tuple[float, int]]], load) -> dict[str, dict]:
    """Write ``step-<name>.hlog`` (1 s intervals) per step from every span at once; returns each
    step's summary in ms. ``load``: the run's :class:`bench.results.measurement.LoadResult` (its clock and window)."""
    logs = StepLogs(out, latencies, load.start_s, load.start_wall_s, load.measure_start_s, load.measure_end_s)
    for step, samples in latencies.items():
        sink = logs.sinks[step]
        for span in samples:
            sink.append(span)
    return logs.close()
