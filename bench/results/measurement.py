"""What the load generator measured, as the verdict, the result files and the simulation read it.

The data lives here, below the run, so that judging a run (:mod:`bench.results.validity`)
and writing its step logs need not import the load generator and the Kafka client: the
real generator (:mod:`bench.run.load`) and the simulated one (:mod:`bench.sim.load`) both
fill these.
"""
from __future__ import annotations

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


@dataclass
class LoadResult:
    started: dict[str, int]  # orderId -> intended start, monotonic us (every order, warm-up included)
    outcomes: dict[str, str]  # orderId -> first terminal status seen
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
        return len(self.started) - len(self.outcomes)

    def wall_s(self, mono_s: float) -> float:
        """The wall-clock label of a monotonic instant, counted from the run's start."""
        return self.start_wall_s + (mono_s - self.start_s)
