"""Load over several worker processes: one schedule split between them, one merged measurement.

One Python process sends some tens of thousands of orders a second; past that, a run's load comes
from ``workers`` processes (``load_workers`` in the workload). Worker k starts the orders of the
run's one schedule whose number hashes to k (:func:`bench.flow.arrivals.share`): together they
start exactly the orders one generator would, each at its intended time, with the same ids, so the
audit, the live line and the verdict see one run. Each worker times its own orders' endings on
this host's monotonic clock, telling them from the others' by key without decoding the rest.

The coordinator (:class:`LoadWorkers`, which a run drives as it drives the in-process
:class:`bench.run.load.LoadGenerator`) starts every worker on one monotonic instant, so their
seconds line up; each second a worker sends its row and its interval histograms, which the
coordinator adds exactly (a merged interval's count is the sum of the workers') into the run's own
``.hlog`` files and timeseries row.

The wire (a worker's stdin and stdout, one JSON object a line): the worker says ``{"ready"}``,
is told ``{"go": start_mono}``, sends ``{"second": ...}`` each second and ``{"done": ...}`` with its
totals at the end; ``{"stop"}`` on its stdin, or stdin closing, stops it.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from hdrh.histogram import HdrHistogram

from bench.flow.workload import load_workload
from bench.kafka import clients
from bench.results.measurement import LoadResult, Second, StartCounts
from bench.results.recording import E2E, LOAD_HISTOGRAMS, IntervalLog, add, hlog_file, new_histogram, summary_ms
from bench.run import procstat
from bench.run.load import LoadGenerator
from bench.run.supervisor import PARENT_ENV, parent_watch

READY_TIMEOUT_S = 60.0
START_AHEAD_S = 0.5  # the common start, this far after the last worker is ready


def _encode(histogram: HdrHistogram) -> str:
    return histogram.encode().decode("ascii")


def _decode(text: str) -> HdrHistogram:
    return HdrHistogram.decode(text.encode("ascii"))


# --- the worker's side --------------------------------------------------------------------------


def worker_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run.load_workers")
    parser.add_argument("--worker", required=True)  # k/n
    parser.add_argument("--workload", required=True)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--kafka-config")
    args = parser.parse_args(argv)
    worker, workers = (int(x) for x in args.worker.split("/"))
    workload = load_workload(Path(args.workload))
    extra = clients.read_properties(Path(args.kafka_config)) if args.kafka_config else {}
    lock = threading.Lock()

    def send(message: dict) -> None:
        with lock:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()

    rolled_now: dict = {}

    def on_rolled(rolled: dict, position: int) -> None:
        rolled_now.update({name: _encode(h) for name, h in rolled.items()}, position=position)

    def on_second(second: Second) -> None:
        send({"second": {"t_s": second.t_s, "offered": second.offered, "finished": second.finished,
                         "in_flight": second.in_flight, "position": rolled_now.pop("position"),
                         "histograms": dict(rolled_now)}})
        rolled_now.clear()

    load = LoadGenerator(args.bootstrap_servers, workload, Path(args.out), args.run_id, extra,
                         on_second=on_second, on_rolled=on_rolled, worker=worker, workers=workers)
    send({"ready": True})
    go: dict = {}

    def listen() -> None:
        for line in sys.stdin:
            message = json.loads(line)
            if "go" in message:
                go["at"] = message["go"]
                started.set()
            elif "stop" in message:
                load.stop()
        load.stop()  # stdin closed: the coordinator is gone
        started.set()

    started = threading.Event()
    threading.Thread(target=listen, name="coordinator", daemon=True).start()
    parent_alive = parent_watch()
    while not started.wait(0.5):
        if not parent_alive():
            return 1
    if "at" not in go:
        return 1
    own = procstat.usage(os.getpid()) or procstat.Usage()
    result = load.run(go["at"])
    used = (procstat.usage(os.getpid()) or procstat.Usage()) - own
    send({"done": {
        "started": result.start_counts.total, "last_seq": result.started_count, "position": load.next_seq - 1,
        "finished_count": result.finished_count, "start_counts": list(result.start_counts.counts),
        "start_wall_s": result.start_wall_s, "offered_in_window": result.offered_in_window,
        "scheduled_in_window": result.scheduled_in_window, "finished_in_window": result.finished_in_window,
        "send_failures": result.send_failures, "interrupted": result.interrupted, "clock": result.clock,
        "batching": load.batching.counts(), "cpu": {"main_s": used.main_s, "other_s": used.other_s,
                                                    "switches": used.switches},
        "others": load.terminals.others, "foreign": load.terminals.foreign,
        "last": {name: _encode(h) for name, h in load.last_intervals.items() if h is not None},
        "counts": {name: h.get_total_count() for name, h in result.histograms.items()}}})
    return 0


# --- the coordinator's side ---------------------------------------------------------------------


class _Worker:
    def __init__(self, cmd: list[str], log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "ab") as log:
            # Its own process group: a Ctrl-C reaches only the run, which tells it.
            self.process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                            env={**os.environ, PARENT_ENV: str(os.getpid())}, process_group=0)
        self.ready = threading.Event()
        self.done: dict | None = None
        self.position = 0

    def send(self, message: dict) -> None:
        try:
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            self.process.stdin.flush()
        except (OSError, ValueError):
            pass  # it is gone: run() says so

    def usage(self) -> procstat.Usage:
        if self.done is not None:
            cpu = self.done["cpu"]
            return procstat.Usage(cpu["main_s"], cpu["other_s"], cpu["switches"])
        return procstat.usage(self.process.pid) or procstat.Usage()


class _MergedBatching:
    def __init__(self) -> None:
        self.totals: dict[str, int] = {}

    def counts(self) -> dict[str, int]:
        return dict(self.totals)


class LoadWorkers:
    """``workers`` load worker processes on this host, driven and read as one load generator."""

    def __init__(self, bootstrap_servers: str, workload, out_dir: Path, run_id: str, workers: int,
                 worker_args: list[str], work_dir: Path, log_dir: Path,
                 backlog: Callable[[], int | None] = lambda: None,
                 on_second: Callable[[Second], None] = lambda s: None,
                 on_start: Callable[[float], None] = lambda start_mono: None) -> None:
        self.workload, self.out_dir, self.workers = workload, out_dir, workers
        self.backlog, self.on_second, self.on_start = backlog, on_second, on_start
        self.stop_requested = threading.Event()
        self.batching = _MergedBatching()
        self.lock = threading.Lock()
        self.emitting = threading.Lock()
        self.rows: dict[float, dict] = {}  # second -> the rows (and histograms) of the workers that sent it, by worker
        self.seconds: list[Second] = []
        self.totals = {name: new_histogram() for name in LOAD_HISTOGRAMS}
        self._workers = []
        for k in range(workers):
            out = work_dir / f"load-worker-{k}"
            out.mkdir()
            cmd = [sys.executable, "-m", "bench.run.load_workers", "--worker", f"{k}/{workers}",
                   "--bootstrap-servers", bootstrap_servers, "--run-id", run_id, "--out", str(out), *worker_args]
            self._workers.append(_Worker(cmd, log_dir / f"load-worker-{k}.log"))

    @property
    def started_count(self) -> int:
        """Orders started by now: every one numbered up to the slowest worker's position."""
        return min(w.position for w in self._workers)

    def stop(self) -> None:
        self.stop_requested.set()
        for w in self._workers:
            w.send({"stop": True})

    def usage(self) -> procstat.Usage:
        total = procstat.Usage()
        for w in self._workers:
            total = total + w.usage()
        return total

    def run(self) -> LoadResult:
        readers = [threading.Thread(target=self._read, args=(w,), daemon=True, name=f"load-worker-{k}")
                   for k, w in enumerate(self._workers)]
        for t in readers:
            t.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        for w in self._workers:
            if not w.ready.wait(max(0.0, deadline - time.monotonic())) or w.process.poll() is not None:
                self.close()
                raise RuntimeError(f"a load worker did not start (log {w.log_path})")
        self.start_mono = time.monotonic() + START_AHEAD_S
        self.start_wall_s = time.time() + START_AHEAD_S
        w = self.workload
        self.measure_start_s = self.start_mono + w.warmup_s
        self.measure_end_s = self.measure_start_s + w.duration_s
        self._logs = {name: IntervalLog(self.out_dir / hlog_file(name), name, self.start_wall_s)
                      for name in LOAD_HISTOGRAMS}
        for worker in self._workers:
            worker.send({"go": self.start_mono})
        self.on_start(self.start_mono)
        for t in readers:
            t.join()
        missing = [w.log_path for w in self._workers if w.done is None]
        if missing:
            for log in self._logs.values():
                log.close()
            raise RuntimeError(f"a load worker ended without its totals (log {missing[0]})")
        self._emit()
        self._last_interval(time.time())
        return self._result()

    def _read(self, worker: _Worker) -> None:
        try:
            for line in worker.process.stdout:
                message = json.loads(line)
                if "ready" in message:
                    worker.ready.set()
                elif "second" in message:
                    worker.position = message["second"]["position"]
                    with self.lock:
                        self.rows.setdefault(message["second"]["t_s"], {})[id(worker)] = message["second"]
                    self._emit()
                elif "done" in message:
                    worker.done = message["done"]
                    self._emit()
        except (OSError, ValueError):
            pass
        worker.process.wait()
        worker.ready.set()

    def _emit(self) -> None:
        """Each second, in order, once every worker still running has sent it (one that has ended
        has nothing more to add): its sums, and its intervals added into the run's logs."""
        with self.emitting:  # one reader thread at a time, so the seconds go out in order
            self._emit_ready()

    def _emit_ready(self) -> None:
        while True:
            with self.lock:
                if not self.rows:
                    return
                t_s = min(self.rows)
                rows = self.rows[t_s]
                if any(id(w) not in rows for w in self._workers if w.done is None):
                    return
                del self.rows[t_s]
                intervals = {}
                for name in LOAD_HISTOGRAMS:
                    interval = new_histogram()
                    for row in rows.values():
                        add(interval, _decode(row["histograms"][name]))
                    self._logs[name].write(interval, t_s - 1.0, t_s)
                    add(self.totals[name], interval)
                    intervals[name] = interval
                rows = rows.values()
                second = Second(t_s, sum(r["offered"] for r in rows), sum(r["finished"] for r in rows),
                                sum(r["in_flight"] for r in rows), self.backlog(),
                                summary_ms(intervals[E2E])["p99"], summary_ms(self.totals[E2E])["p99"])
                self.seconds.append(second)
                self.last_t_s = t_s
            self.on_second(second)

    def _last_interval(self, end_wall_s: float) -> None:
        """What the workers recorded after their last whole second, as one interval to the end."""
        last_t_s = getattr(self, "last_t_s", 0.0)
        for name in LOAD_HISTOGRAMS:
            interval = new_histogram()
            for w in self._workers:
                if name in w.done["last"]:
                    add(interval, _decode(w.done["last"][name]))
            self._logs[name].write(interval, last_t_s, max(last_t_s, end_wall_s - self.start_wall_s))
            add(self.totals[name], interval)
            self._logs[name].close()

    def _result(self) -> LoadResult:
        done = [w.done for w in self._workers]
        interrupted = self.stop_requested.is_set() or any(d["interrupted"] for d in done)
        # A complete schedule ends at its last order, whoever started it; an interrupted one at the
        # slowest worker's position (orders numbered past it may not have started).
        started = min(d["position"] for d in done) if interrupted else max(d["last_seq"] for d in done)
        counts = StartCounts(int(self.start_mono * 1e6))
        for d in done:
            for i, n in enumerate(d["start_counts"]):
                while len(counts.counts) <= i:
                    counts.counts.append(0)
                counts.counts[i] += n
            counts.total += d["started"]
        for d in done:
            for key, n in d["batching"].items():
                self.batching.totals[key] = self.batching.totals.get(key, 0) + n
        total = lambda key: sum(d[key] for d in done)
        return LoadResult(
            started_count=started, finished_count=total("finished_count"), start_counts=counts,
            start_s=self.start_mono, start_wall_s=self.start_wall_s, measure_start_s=self.measure_start_s,
            measure_end_s=self.measure_end_s, offered_in_window=total("offered_in_window"),
            scheduled_in_window=total("scheduled_in_window"), finished_in_window=total("finished_in_window"),
            send_failures=total("send_failures"), seconds=self.seconds, interrupted=interrupted,
            histograms=self.totals, clock=done[0]["clock"])

    def describe(self) -> list[dict]:
        """summary.json's ``load_workers``: each worker's orders, measured endings and CPU."""
        return [{"orders": w.done["started"], "e2e_count": w.done["counts"].get(E2E, 0),
                 "cpu_s": round(w.usage().cpu_s, 3), "others_ignored": w.done["others"]}
                for w in self._workers if w.done is not None]

    def close(self) -> None:
        """Every worker gone: stdin closed tells it to stop; then it is killed."""
        for w in self._workers:
            try:
                w.process.stdin.close()
            except OSError:
                pass
        for w in self._workers:
            try:
                w.process.wait(10.0)
            except subprocess.TimeoutExpired:
                w.process.kill()
                w.process.wait()


if __name__ == "__main__":
    sys.exit(worker_main())
