"""The simulated open-loop load generator and the consumer of terminal events.

Orders start at the same intended times as in a real run (:func:`bench.flow.arrivals.schedule`
with the workload's seed), whatever the system does. Each is sent after a small
schedule slip and, when its terminal event reaches the generator's consumer,
its latency from the intended start is recorded, as :mod:`bench.run.load` does.
"""
from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import simpy

from bench.flow import arrivals
from bench.flow import events as ev
from bench.results.measurement import Second
from bench.run.load import FLUSH_MIN_S
from bench.sim.kafka import Producer, partition_of
from bench.flow.workload import Workload

CHUNKS_PER_TICK = 10  # a timeseries row per second, arrivals handled per 100 ms


class Terminals:
    """The generator's consumer of order-events: first ending per order, latency from intended start.

    A :class:`bench.patterns.base.Handler`; it reads the simulated time from the outbox's clock."""

    def __init__(self, measure_from_s: float, measure_until_s: float) -> None:
        self.measure_from_s, self.measure_until_s = measure_from_s, measure_until_s
        self.outcomes: dict[str, str] = {}
        self.finished_in_window = 0
        self.duplicates = 0
        self.e2e_end_s = array("d")
        self.e2e_s = array("d")
        self.e2e_completed = array("b")

    def handle(self, topic: str, partition: int, event: dict, out) -> None:
        order_id, status = event["orderId"], event.get("status")
        if order_id in self.outcomes:
            self.duplicates += 1
            return
        self.outcomes[order_id] = status
        now = out.t
        if self.measure_from_s <= now < self.measure_until_s:
            self.finished_in_window += 1
        t0 = event["t0_us"] / 1e6
        if self.measure_from_s <= t0 < self.measure_until_s:
            self.e2e_end_s.append(now)
            self.e2e_s.append(now - t0)
            self.e2e_completed.append(status == ev.COMPLETED)

    def tick(self, now_s: float, out) -> None:
        pass

    def restore(self, state, out) -> None:
        pass

    def revoke(self, partitions: set[int]) -> None:
        pass


@dataclass(eq=False)
class LoadGenerator:
    """Starts orders on schedule; ticks once a second to record the timeseries."""

    env: simpy.Environment
    workload: Workload
    producer: Producer
    terminals: Terminals
    slip: Iterator[float]
    run_id: str
    backlog: Callable[[], int]  # messages fetched or waiting but not handled yet
    on_cpu: Callable[[int, float], None]  # (orders sent, seconds): charges the generator's CPU

    def __post_init__(self) -> None:
        workload = self.workload
        self.started: dict[str, int] = {}
        self.offered_in_window = 0
        self.scheduled_in_window = 0
        self.slip_end_s = array("d")
        self.slip_s = array("d")
        self.seconds: list[Second] = []  # p99 columns are filled in from the histograms afterwards
        self.padding = "x" * workload.payload_bytes
        self.load_s = workload.warmup_s + workload.duration_s
        self.measure_from_s = workload.warmup_s
        self.measure_until_s = workload.warmup_s + workload.duration_s

    def run(self):
        """The SimPy process: arrivals a tenth of a second at a time (each sent at its own time, and
        the generator's CPU spread evenly), a timeseries row every second."""
        w = self.workload
        schedule = arrivals.schedule(w.arrival, w.rate_per_s, w.seed)
        partitions = self.producer.cluster.partitions
        send, flush, started, slip = self.producer.send, self.producer.flush, self.started, self.slip
        # Read per order (50,000 a simulated second): bound once, not looked up on self each time.
        run_id, padding, load_s = self.run_id, self.padding, self.load_s
        measure_from_s, measure_until_s = self.measure_from_s, self.measure_until_s
        slip_end_s, slip_s = self.slip_end_s.append, self.slip_s.append
        pending = next(schedule)
        seq = 0
        finished_before = 0
        chunk = 0
        sent_this_second = 0
        while True:
            sent = scheduled = offered = 0
            horizon = (chunk + 1) / CHUNKS_PER_TICK
            while pending < horizon and pending < load_s:
                seq += 1
                order_id = f"{run_id}-{seq}"
                t0_us = int(pending * 1e6)
                event = {"orderId": order_id, "status": ev.CREATED, "t0_us": t0_us,
                         "amount": 10 + seq % 90, "items": 1 + seq % 3}
                if padding:
                    event["padding"] = padding
                started[order_id] = t0_us
                sent_s = pending + next(slip)
                send(ev.ORDER_CREATED, partition_of(order_id, partitions), (event, sent_s), sent_s)
                if measure_from_s <= pending < measure_until_s:
                    scheduled += 1
                    slip_end_s(sent_s)
                    slip_s(sent_s - pending)
                if measure_from_s <= sent_s < measure_until_s:
                    offered += 1
                sent += 1
                pending = next(schedule)
                if pending - sent_s >= FLUSH_MIN_S:
                    flush(sent_s)  # as the real generator does when it has a millisecond to wait
            self.scheduled_in_window += scheduled
            self.offered_in_window += offered
            self.on_cpu(sent, 1.0 / CHUNKS_PER_TICK)
            sent_this_second += sent
            yield self.env.timeout(horizon - self.env.now)
            chunk += 1
            if chunk % CHUNKS_PER_TICK:
                continue
            second = chunk // CHUNKS_PER_TICK
            finished = len(self.terminals.outcomes)
            self.seconds.append(Second(second, sent_this_second, finished - finished_before, len(started) - finished,
                                       self.backlog(), None, None))
            finished_before, sent_this_second = finished, 0
            if second >= self.load_s and (finished >= len(started) or second >= self.load_s + w.drain_s):
                return
