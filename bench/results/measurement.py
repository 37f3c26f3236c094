"""What the load generator measured, as the verdict, the result files and the simulation read it.

The data lives here, below the run, so that judging a run (:mod:`bench.results.validity`)
and writing its step logs need not import the load generator and the Kafka client: the
real generator (:mod:`bench.run.load`) and the simulated one (:mod:`bench.sim.load`) both
fill these.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass, field


@dataclass
class Second:
    """One row of the timeseries: live from the load generator, or read back from timeseries.csv
    (:func:`bench.results.files.read_timeseries`, where a column it lacks is None)."""

    t_s: float
    offered: int
    finished: int
    in_flight: int
    backlog: int | None  # messages the services have not handled yet (fetched or not)
    p99_ms: float | None  # of orders finished in this second (measurement window only)
    p99_so_far_ms: float | None  # of everything measured so far


class StartCounts:
    """How many orders were scheduled to start in each ``BIN_US`` of the run (intended starts,
    ``t0_us``): what validity needs of every order's start, in memory that grows with the run's
    length by 400 bytes a second, not with its orders."""

    BIN_US = 10_000

    def __init__(self, origin_us: int) -> None:
        self.origin_us = origin_us
        self.counts = array("I")
        self.total = 0

    def add(self, t0_us: int) -> None:
        i = max(0, (t0_us - self.origin_us) // self.BIN_US)
        counts = self.counts
        if i >= len(counts):
            counts.frombytes(bytes(counts.itemsize * (i + 1 - len(counts))))
        counts[i] += 1
        self.total += 1

    def between(self, lo_us: float, hi_us: float) -> float:
        """Orders scheduled in [lo_us, hi_us); a bin cut by a bound counts in proportion."""
        counts, width = self.counts, self.BIN_US
        lo, hi = (max(0.0, lo_us - self.origin_us) / width, min(len(counts), (hi_us - self.origin_us) / width))
        if hi <= lo:
            return 0.0
        first, last = int(lo), int(hi)
        if first == last:
            return counts[first] * (hi - lo)
        inside = sum(counts[first + 1:last]) + counts[first] * (first + 1 - lo)
        return inside + (counts[last] * (hi - last) if last < len(counts) else 0.0)


@dataclass
class LoadResult:
    started_count: int  # orders started (warm-up included)
    finished_count: int  # orders whose first terminal event the generator read
    start_counts: StartCounts  # intended starts of every order, binned
    start_s: float  # monotonic seconds (ev.now_us's clock) when the load began
    start_wall_s: float  # the wall clock then: a label only
    measure_start_s: float  # monotonic, as start_s
    measure_end_s: float
    offered_in_window: int  # sent during the measurement window (by send time)
    scheduled_in_window: int  # intended starts inside the window
    finished_in_window: int  # terminal events received inside the window
    send_failures: int
    seconds: list[Second] = field(default_factory=list)
    interrupted: bool = False
    histograms: dict = field(default_factory=dict)  # name -> total HdrHistogram
    clock: dict = field(default_factory=dict)  # how the wall clock moved (bench.run.clock)

    @property
    def in_flight(self) -> int:
        return self.started_count - self.finished_count

    def wall_s(self, mono_s: float) -> float:
        """The wall-clock label of a monotonic instant, counted from the run's start."""
        return self.start_wall_s + (mono_s - self.start_s)
