"""The open-loop load generator: starts orders on schedule and times their endings.

Orders start at intended times from :mod:`bench.flow.arrivals`, whether or not the
system keeps up. Each order carries its intended start (``t0_us``); the
generator's own consumer of ``order-events`` records end-to-end latency as
``now - t0_us`` on this process's monotonic clock (one clock, which nothing
steps), so a stall shows up in the latency of every order scheduled during it (no
coordinated omission). How late each order was actually sent is recorded
separately as schedule slip. The wall clock is read only for labels, and watched
(:mod:`bench.run.clock`) so a run can say whether it moved.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from bench.flow import arrivals
from bench.kafka import clients, kafkastats
from bench.run import procstat
from bench.run.clock import WallClockWatch
from bench.flow import events as ev
from bench.results.measurement import LoadResult, Second, StartCounts
from bench.results.recording import (E2E, E2E_CANCELLED, E2E_COMPLETED, LOAD_HISTOGRAMS, SLIP, IntervalRecorder,
                                     hlog_file, summary_ms)
from bench.flow.workload import Workload

TERMINAL_POLL_S = 0.05
TICK_S = 0.0005  # shortest sleep between bursts of sends
FLUSH_MIN_S = 0.001  # librdkafka's flush timeout is in whole milliseconds
BURST_MAX = 1000  # orders per burst, so a generator that fell behind still ticks each second


def _seq(order_id, prefix: str) -> int | None:
    """The sequence number of one of this run's orders (``<run_id>-<seq>``); None for any other id."""
    if type(order_id) is not str or not order_id.startswith(prefix):
        return None
    tail = order_id[len(prefix):]
    return int(tail) if tail.isdigit() else None


class _Terminals(threading.Thread):
    """Consumes order-events and records latency from each order's intended start."""

    def __init__(self, conf: dict, partitions: int, recorders: dict[str, IntervalRecorder],
                 measure_from_us: int, lock: threading.Lock, run_id: str, in_flight: set[int],
                 share: tuple[int, int, int] = (0, 0, 1)) -> None:
        super().__init__(name="terminals", daemon=True)
        self.consumer = Consumer(conf)
        self.consumer.assign([TopicPartition(ev.ORDER_EVENTS, p, OFFSET_BEGINNING) for p in range(partitions)])
        self.recorders, self.lock = recorders, lock
        self.measure_from_us = measure_from_us
        self.measure_until_us = 1 << 62
        # Orders are f"{run_id}-{seq}": the generator's in-flight seqs are the only per-order state
        # (added before an order is sent, removed at its first terminal event).
        self.prefix, self.in_flight = f"{run_id}-", in_flight
        # (seed, worker, workers): another worker's orders are told by their key, never decoded here.
        self.seed, self.worker, self.workers = share
        self.key_prefix = self.prefix.encode()
        self.others = 0  # terminal events of the run's orders another worker started (ignored)
        self.foreign = 0  # terminal events of orders this run did not start (ignored)
        self.finished_total = 0
        self.finished_in_window = 0
        self.duplicates = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                # consume(n, timeout) waits for n messages or the timeout: poll for the
                # first one, then take only what is already there, so no wait adds latency.
                first = self.consumer.poll(TERMINAL_POLL_S)
                if first is not None:
                    self._take([first, *self.consumer.consume(1000, 0)])
        finally:
            self.consumer.close()

    def _mine(self, key: bytes | None) -> bool:
        """Whether a terminal event's order is this worker's, from its key (the orderId) alone."""
        if key is None or not key.startswith(self.key_prefix):
            return True  # not one of the run's numbered orders: decoded and counted as foreign
        tail = key[len(self.key_prefix):]
        if not tail.isdigit() or arrivals.owner(int(tail), self.seed, self.workers) == self.worker:
            return True
        self.others += 1
        return False

    def _take(self, msgs: list) -> None:
        now_us = ev.now_us()
        with self.lock:
            for msg in msgs:
                if msg.error() is not None:
                    continue
                if self.workers > 1 and not self._mine(msg.key()):
                    continue
                try:
                    event = ev.decode(msg.value())
                except ValueError:
                    continue
                order_id, status = event["orderId"], event.get("status")
                seq = _seq(order_id, self.prefix)
                if seq is None:
                    self.foreign += 1
                    continue
                if seq not in self.in_flight:
                    self.duplicates += 1  # the audit judges duplicates; latency counts the first ending only
                    continue
                self.in_flight.discard(seq)
                self.finished_total += 1
                if self.measure_from_us <= now_us < self.measure_until_us:
                    self.finished_in_window += 1
                t0 = event.get("t0_us")
                if t0 is None or t0 < self.measure_from_us or t0 >= self.measure_until_us:
                    continue  # warm-up orders (and any after the window) are not measured
                latency = now_us - t0
                self.recorders[E2E].record_us(latency)
                self.recorders[E2E_COMPLETED if status == ev.COMPLETED else E2E_CANCELLED].record_us(latency)


@dataclass(eq=False)
class LoadGenerator:
    bootstrap_servers: str
    workload: Workload
    out_dir: Path
    run_id: str
    client_extra: dict | None = None
    backlog: Callable[[], int | None] = lambda: None
    on_second: Callable[[Second], None] = lambda s: None
    on_start: Callable[[float], None] = lambda start_mono: None
    # Each second's interval histograms by name, as they are rolled (a load worker sends them on).
    on_rolled: Callable[[dict], None] = lambda rolled: None
    # Worker `worker` of `workers` starts its share of the run's one schedule (bench.flow.arrivals.share).
    worker: int = 0
    workers: int = 1

    def __post_init__(self) -> None:
        workload, run_id = self.workload, self.run_id
        extra = {**(self.client_extra or {}), "client.id": "bench-load"}
        self.batching = kafkastats.Batching()  # of its producer and its terminal-event consumer
        self.producer = Producer({**clients.producer_config(self.bootstrap_servers, workload, extra),
                                  **self.batching.conf("producer")})
        self.consumer_conf = {**clients.consumer_config(self.bootstrap_servers, workload, f"bench-load-{run_id}",
                                                        extra),
                              **self.batching.conf("terminals")}
        self.stop_requested = threading.Event()
        # Load workers stop together at one point of the schedule (stop_at), so that the orders
        # they started are exactly those due before it: no worker started one another skipped.
        self.end_offset_s = float("inf")
        self.send_failures = 0
        self.padding = "x" * workload.payload_bytes
        self.on_delivery = self._delivered  # bound once, not per order

    def stop(self) -> None:
        self.stop_requested.set()

    def stop_at(self, offset_s: float) -> None:
        """Start every order due before ``offset_s`` (seconds from the start) and none after; then drain."""
        self.end_offset_s = offset_s

    @property
    def position(self) -> int:
        """Every order of this generator numbered up to here has started; the next is not yet due."""
        return self.next_seq - 1

    @property
    def interrupted(self) -> bool:
        return self.stop_requested.is_set() or self.end_offset_s < float("inf")

    def usage(self) -> procstat.Usage:
        """CPU besides the calling process's own: none, the load runs in it (load workers' differs)."""
        return procstat.Usage()

    def close(self) -> None:
        """Nothing outlives run() here (load workers' processes do)."""

    def describe(self) -> None:
        """summary.json's ``load_workers``: None, one process."""
        return None

    def _delivered(self, err, msg) -> None:
        if err is not None:
            self.send_failures += 1

    def run(self, start_mono: float | None = None) -> LoadResult:
        """The load, from now or from ``start_mono`` (this host's monotonic seconds: load workers
        started together share one start, so their seconds and intervals line up)."""
        w = self.workload
        self.lock = threading.Lock()
        if start_mono is not None:
            time.sleep(max(0.0, start_mono - time.monotonic()))
        # Every stamp below is on the monotonic clock; the wall clock only labels the intervals.
        self.clock = WallClockWatch.start()
        self.start_wall_s = time.time()
        start_us = int(start_mono * 1e6) if start_mono is not None else ev.now_us()
        self.start_mono = start_us / 1e6
        measure_from_us = start_us + int(w.warmup_s * 1e6)
        measure_until_us = measure_from_us + int(w.duration_s * 1e6)
        self.measure_start_s, self.measure_end_s = measure_from_us / 1e6, measure_until_us / 1e6
        # Written to under `lock` by the terminal thread, rolled once a second here.
        self.recorders = {name: IntervalRecorder(name, self.out_dir / hlog_file(name), self.start_wall_s)
                          for name in LOAD_HISTOGRAMS}
        self.in_flight: set[int] = set()  # seqs of orders started and not ended yet
        self.started_count = 0
        self.start_counts = StartCounts(start_us)
        self.terminals = _Terminals(self.consumer_conf, w.partitions, self.recorders, measure_from_us, self.lock,
                                    self.run_id, self.in_flight, (w.seed, self.worker, self.workers))
        self.terminals.measure_until_us = measure_until_us
        self.terminals.start()
        self.on_start(self.start_mono)
        self.seconds: list[Second] = []
        self.next_tick = self.start_mono + 1.0
        self.sent_this_second = self.finished_before = 0

        load_s = w.warmup_s + w.duration_s
        self.offered_in_window = self.scheduled_in_window = 0
        offsets = arrivals.share(arrivals.schedule(w.arrival, w.rate_per_s, w.seed), w.seed, self.worker, self.workers)
        self.next_seq, next_offset = next(offsets)
        try:
            while next_offset < min(load_s, self.end_offset_s):
                # Sleep once per tick at most: at high rates every order due by then goes out in
                # one burst (each still records its own slip), at low rates one order per wake-up.
                now_s = time.monotonic() - self.start_mono
                target_s = next_offset if now_s >= next_offset else max(next_offset, now_s + TICK_S)
                if not self._wait_until(self.start_mono + target_s):
                    break
                next_offset = self._burst(offsets, next_offset, time.monotonic() - self.start_mono,
                                          min(load_s, self.end_offset_s),
                                          start_us, measure_from_us, measure_until_us)
            self.producer.flush(30)
            self._drain()
        finally:
            self.terminals.stopping.set()
            self.terminals.join(10)
            with self.lock:
                self.last_intervals = {name: rec.close() for name, rec in self.recorders.items()}
        self.clock.read()
        return LoadResult(
            started_count=self.started_count, finished_count=self.terminals.finished_total,
            start_counts=self.start_counts, start_s=self.start_mono,
            start_wall_s=self.start_wall_s, measure_start_s=measure_from_us / 1e6, measure_end_s=measure_until_us / 1e6,
            offered_in_window=self.offered_in_window, scheduled_in_window=self.scheduled_in_window,
            finished_in_window=self.terminals.finished_in_window, send_failures=self.send_failures,
            seconds=self.seconds, interrupted=self.interrupted,
            histograms={name: rec.total for name, rec in self.recorders.items()},
            clock=self.clock.summary(self.start_mono),
        )

    def _burst(self, offsets, next_offset: float, now_s: float, load_s: float, start_us: int,
               measure_from_us: int, measure_until_us: int) -> float:
        """Send every order due by ``now_s``; returns the next order's intended offset."""
        in_flight, counts, slip = self.in_flight, self.start_counts, self.recorders[SLIP]
        produce, padding = self._produce, self.padding
        with self.lock:
            for _ in range(BURST_MAX):
                if next_offset > now_s or next_offset >= load_s:
                    break
                seq = self.next_seq
                order_id = f"{self.run_id}-{seq}"
                t0_us = start_us + int(next_offset * 1e6)
                event = {"orderId": order_id, "status": ev.CREATED, "t0_us": t0_us, "ts_us": ev.now_us(),
                         "amount": 10 + seq % 90, "items": 1 + seq % 3}
                if padding:
                    event["padding"] = padding
                in_flight.add(seq)
                counts.add(t0_us)
                self.started_count = seq
                produce(ev.encode(event), order_id)
                sent_us = ev.now_us()
                if measure_from_us <= t0_us < measure_until_us:
                    self.scheduled_in_window += 1
                    slip.record_us(sent_us - t0_us)
                if measure_from_us <= sent_us < measure_until_us:
                    self.offered_in_window += 1
                self.sent_this_second += 1
                self.next_seq, next_offset = next(offsets)
        self.producer.poll(0)
        return next_offset

    def _wait_until(self, target_mono: float) -> bool:
        """Sleep until the intended start, ticking on each second boundary; False when stopped."""
        now = time.monotonic()
        while True:
            if now >= self.next_tick:
                self._tick()
            if now >= target_mono:
                return not self.stop_requested.is_set()
            gap = min(target_mono, self.next_tick) - now
            if gap >= FLUSH_MIN_S and len(self.producer):
                # A sleep long enough to wait for acknowledgements: send what is queued now rather
                # than after linger.ms (flush returns as soon as it is acknowledged). Shorter gaps
                # (high rates) leave batching to linger.ms.
                self.producer.flush(gap)
            else:
                time.sleep(gap)
            if self.stop_requested.is_set():
                return False
            now = time.monotonic()

    def _tick(self) -> None:
        self.clock.read()
        with self.lock:
            finished = self.terminals.finished_total
            in_flight = len(self.in_flight)
            now_wall = self.start_wall_s + (self.next_tick - self.start_mono)
            rolled = {name: rec.roll(now_wall) for name, rec in self.recorders.items()}
            total = self.recorders[E2E].total
        self.on_rolled(rolled)
        second = Second(round(self.next_tick - self.start_mono), self.sent_this_second,
                        finished - self.finished_before, in_flight, self.backlog(),
                        summary_ms(rolled[E2E])["p99"], summary_ms(total)["p99"])
        self.seconds.append(second)
        self.on_second(second)
        self.sent_this_second, self.finished_before = 0, finished
        self.next_tick += 1.0

    def _produce(self, value: bytes, key: str) -> None:
        while True:
            try:
                self.producer.produce(ev.ORDER_CREATED, value, key, on_delivery=self.on_delivery)
                return
            except BufferError:
                self.producer.poll(0.005)

    def _drain(self) -> None:
        """Wait for in-flight orders, up to the workload's drain time (a few seconds when interrupted)."""
        limit = min(self.workload.drain_s, 5.0) if self.interrupted else self.workload.drain_s
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            with self.lock:
                if not self.in_flight:
                    return
            if time.monotonic() >= self.next_tick:
                self._tick()
            time.sleep(0.05)
