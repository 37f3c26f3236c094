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
totals at the end. An interrupted run tells every worker ``{"stop_at": offset}``, one point of the
schedule a moment ahead, so together they have started exactly the orders due before it, as one
generator would have; stdin closing (the coordinator gone) stops a worker at once.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from collections.abc import Callable

from hdrh.histogram import HdrHistogram

from bench.errors import BadEnvironment
from bench.flow.workload import load_workload
from bench.kafka import clients
from bench.kafka.errors import BrokerError
from bench.results.measurement import LoadResult, Second, StartCounts
from bench.results.recording import E2E, LOAD_HISTOGRAMS, IntervalLog, add, hlog_file, new_histogram, summary_ms
from bench.run import procstat
from bench.run.load import LoadGenerator
from bench.run.supervisor import PARENT_ENV, parent_watch

READY_TIMEOUT_S = 60.0
START_AHEAD_S = 0.5  # the common start, this far after the last worker is ready
STOP_AHEAD_S = 0.5  # an interruption's common end of the schedule, this far after it is asked
UNREACHABLE_S = 30.0  # a placed worker whose agent answered nothing this long is gone (its lease ends it there)


class LoadWorkerError(BadEnvironment):
    """A load worker that did not start, or ended before the load did (its log says why)."""


def _encode(histogram: HdrHistogram) -> str:
    return histogram.encode().decode("ascii")


def _decode(text: str) -> HdrHistogram:
    return HdrHistogram.decode(text.encode("ascii"))


# --- the worker's side --------------------------------------------------------------------------


def _cpu() -> dict:
    """This process's CPU so far, as the coordinator adds it up: a worker reports its own, so a
    worker on another host is measured as one on this host is."""
    return (procstat.usage(os.getpid()) or procstat.Usage()).to_dict()


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

    def send(message: dict) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    rolled_now: dict = {}

    def on_rolled(rolled: dict) -> None:
        rolled_now.update((name, _encode(h)) for name, h in rolled.items())

    def on_second(second: Second) -> None:  # in the generator's own thread, as every send
        send({"second": {"t_s": second.t_s, "offered": second.offered, "finished": second.finished,
                         "in_flight": second.in_flight, "position": load.position, "histograms": dict(rolled_now),
                         "cpu": _cpu()}})
        rolled_now.clear()

    load = LoadGenerator(args.bootstrap_servers, workload, Path(args.out), args.run_id, extra,
                         on_second=on_second, on_rolled=on_rolled, worker=worker, workers=workers)
    send({"ready": True, "cpu": _cpu()})
    go: dict = {}
    started = threading.Event()

    def listen() -> None:
        for line in sys.stdin:
            message = json.loads(line)
            if "go" in message:
                go["at"] = message["go"]
                started.set()
            elif "stop_at" in message:
                load.stop_at(message["stop_at"])
        load.stop()  # stdin closed: the coordinator is gone
        started.set()

    threading.Thread(target=listen, name="coordinator", daemon=True).start()
    parent_alive = parent_watch()
    while not started.wait(0.5):
        if not parent_alive():
            return 1
    if "at" not in go:
        return 1
    result = load.run(go["at"])
    last_t_s = round(load.next_tick - load.start_mono)  # the second its last, partial interval is in
    send({"done": {
        "started": result.start_counts.total, "position": load.position,
        "finished_count": result.finished_count, "start_counts": list(result.start_counts.counts),
        "offered_in_window": result.offered_in_window, "scheduled_in_window": result.scheduled_in_window,
        "finished_in_window": result.finished_in_window, "send_failures": result.send_failures,
        "interrupted": result.interrupted, "clock": result.clock, "batching": load.batching.counts(),
        "cpu": _cpu(),
        "others": load.terminals.others, "counts": {name: h.get_total_count() for name, h in result.histograms.items()},
        "last": {"t_s": last_t_s, "offered": load.sent_this_second,
                 "finished": load.terminals.finished_total - load.finished_before, "in_flight": len(load.in_flight),
                 "position": load.position,
                 "histograms": {name: _encode(h) for name, h in load.last_intervals.items() if h is not None}}}})
    return 0


# --- the coordinator's side ---------------------------------------------------------------------


class _Progress:
    """What the coordinator knows of a worker, wherever it runs: from what the worker said."""

    def __init__(self) -> None:
        self.ready = False
        self.base = procstat.Usage()  # its CPU when ready: its start-up is not the load's
        self.cpu: dict | None = None  # as it last reported
        self.done: dict | None = None
        self.gone = False  # its output ended (it exited), with or without its totals
        self.position = 0
        self.e2e = new_histogram()  # its own orders' end-to-end latency, as merged

    def heard(self, message: dict) -> None:
        said = next((message[key] for key in ("second", "done") if isinstance(message.get(key), dict)), message)
        if "cpu" in said:
            self.cpu = said["cpu"]
        if "ready" in message:
            self.ready = True
            self.base = procstat.Usage.from_dict(message.get("cpu"))

    def usage(self) -> procstat.Usage:
        """Its CPU since it was ready, as it last reported (once a second, and when done)."""
        return procstat.Usage.from_dict(self.cpu) - self.base if self.cpu is not None else procstat.Usage()


class WorkerProcess(_Progress):
    """A load worker process on this host, with its pipes (the coordinator's, or an agent's for a
    worker its coordinator placed there)."""

    def __init__(self, cmd: list[str], log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "ab") as log:
            # Its own process group: a Ctrl-C reaches only the run, which tells it.
            self.process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                            env={**os.environ, PARENT_ENV: str(os.getpid())}, process_group=0)
        super().__init__()

    def send(self, message: dict) -> None:
        try:
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            self.process.stdin.flush()
        except (OSError, ValueError):
            pass  # it is gone: run() says so

    def read(self, into: queue.Queue) -> None:
        """Its lines, parsed, onto ``into`` (a reader thread's whole job); None once it has exited."""
        try:
            for line in self.process.stdout:
                into.put((self, json.loads(line)))
        except (OSError, ValueError):
            pass
        self.process.wait()
        into.put((self, None))

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self, log_dir: Path | None = None) -> None:
        """Gone: stdin closed tells it to stop; then it is killed."""
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(10.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class _RemoteWorker(_Progress):
    """A load worker another host's agent runs (:mod:`bench.run.agent`): its lines fetched over
    the agent's control plane, what it is told passed through it."""

    POLL_WAIT_S = 0.5  # the agent holds a fetch this long for a line to arrive

    def __init__(self, host, worker: int, workers: int, log_path: Path) -> None:
        super().__init__()
        self.host, self.log_path = host, log_path
        self.name = f"load-worker-{worker}"
        host.call("/load", {"index": worker, "of": workers})
        # Its monotonic clock is its host's: the common start, said in the coordinator's, is moved
        # by the offset measured when the run opened there (0 for namespaces of one kernel).
        self.offset_s = host.clock_at_open.get("monotonic_offset_ms", 0.0) / 1000

    def send(self, message: dict) -> None:
        if "go" in message:
            message = {"go": message["go"] + self.offset_s}
        try:
            self.host.call("/tell", {"name": self.name, "message": message})
        except BrokerError:
            pass  # unreachable: its lines stop too, and run() says so

    def read(self, into: queue.Queue) -> None:
        heard_at = time.monotonic()
        while True:
            try:
                answer = self.host.call("/lines", {"name": self.name, "wait_s": self.POLL_WAIT_S}, timeout_s=15.0)
                heard_at = time.monotonic()
            except BrokerError:
                if time.monotonic() - heard_at > UNREACHABLE_S:
                    break  # its agent is gone: so is the worker (its lease ends it there)
                time.sleep(self.POLL_WAIT_S)
                continue
            for message in answer.get("messages", []):
                if isinstance(message, dict):
                    into.put((self, message))
            if answer.get("exited"):
                break
        into.put((self, None))

    def alive(self) -> bool:
        return not self.gone

    def close(self, log_dir: Path | None = None) -> None:
        try:
            self.host.call("/tell", {"name": self.name, "message": {"close": True}})
            if log_dir is not None:
                self.log_path.write_text(str(self.host.call("/log", {"name": self.name}).get("log", "")))
        except BrokerError:
            pass  # unreachable: the agent's lease ends it


class _MergedBatching:
    def __init__(self) -> None:
        self.totals: dict[str, int] = {}

    def counts(self) -> dict[str, int]:
        return dict(self.totals)


class LoadWorkers:
    """``workers`` load worker processes, on this host or placed on others' agents (``placed``:
    worker number -> its :class:`bench.run.remote.Host`), driven and read as one load generator.

    Everything but reading the workers' pipes happens in the thread that calls :meth:`run`, as with
    the in-process generator: merging, ``on_second`` and telling the workers to stop."""

    def __init__(self, bootstrap_servers: str, workload, out_dir: Path, run_id: str, workers: int,
                 worker_args: list[str], work_dir: Path, log_dir: Path,
                 backlog: Callable[[], int | None] = lambda: None,
                 on_second: Callable[[Second], None] = lambda s: None,
                 on_start: Callable[[float], None] = lambda start_mono: None,
                 placed: dict | None = None) -> None:
        self.workload, self.out_dir, self.workers = workload, out_dir, workers
        self.placed = dict(placed or {})
        self.backlog, self.on_second, self.on_start = backlog, on_second, on_start
        self.stop_requested = threading.Event()
        self.batching = _MergedBatching()
        self.rows: dict[float, dict] = {}  # second -> the rows of the workers that sent it, by worker number
        self.seconds: list[Second] = []
        self.totals = {name: new_histogram() for name in LOAD_HISTOGRAMS}
        self._logs: dict[str, IntervalLog] = {}
        self._cmds = [[sys.executable, "-m", "bench.run.load_workers", "--worker", f"{k}/{workers}",
                       "--bootstrap-servers", bootstrap_servers, "--run-id", run_id,
                       "--out", str(work_dir / f"load-worker-{k}"), *worker_args] for k in range(workers)]
        self._log_dir = log_dir
        self._workers: list[WorkerProcess | _RemoteWorker] = []
        self._stop_sent = False

    @property
    def started_count(self) -> int:
        """Orders started by now: every one numbered up to the slowest worker's position."""
        return min((w.position for w in self._workers), default=0)

    def stop(self) -> None:
        """Stop the load (a signal handler may call this: run()'s thread tells the workers)."""
        self.stop_requested.set()

    def usage(self) -> procstat.Usage:
        total = procstat.Usage()
        for w in self._workers:
            total = total + w.usage()
        return total

    def run(self) -> LoadResult:
        messages: queue.Queue = queue.Queue()
        for k, cmd in enumerate(self._cmds):
            log_path = self._log_dir / f"load-worker-{k}.log"
            if k in self.placed:
                worker = _RemoteWorker(self.placed[k], k, self.workers, log_path)
            else:
                Path(cmd[cmd.index("--out") + 1]).mkdir()
                worker = WorkerProcess(cmd, log_path)
            self._workers.append(worker)
            threading.Thread(target=worker.read, args=(messages,), daemon=True, name=f"load-worker-{k}").start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(w.ready for w in self._workers):
            try:
                worker, message = messages.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise LoadWorkerError(f"a load worker did not start within {READY_TIMEOUT_S:g}s "
                                      f"(log {next(w for w in self._workers if not w.ready).log_path})") from None
            if message is None:
                raise LoadWorkerError(f"a load worker did not start (log {worker.log_path})")
            worker.heard(message)
        self.start_mono = time.monotonic() + START_AHEAD_S
        self.start_wall_s = time.time() + START_AHEAD_S
        w = self.workload
        self.measure_start_s = self.start_mono + w.warmup_s
        self.measure_end_s = self.measure_start_s + w.duration_s
        self._logs = {name: IntervalLog(self.out_dir / hlog_file(name), name, self.start_wall_s)
                      for name in LOAD_HISTOGRAMS}
        try:
            for worker in self._workers:
                worker.send({"go": self.start_mono})
            self.on_start(self.start_mono)
            self._follow(messages)
        finally:
            for log in self._logs.values():
                log.close()
        lost = [w for w in self._workers if w.done is None]
        if lost:
            raise LoadWorkerError(f"a load worker exited before the load ended, so its orders cannot be counted "
                                  f"(log {lost[0].log_path})")
        return self._result()

    def _follow(self, messages: queue.Queue) -> None:
        """Until every worker has exited: their seconds merged in order, a stop passed on."""
        while not all(w.gone for w in self._workers):
            if self.stop_requested.is_set() and not self._stop_sent:
                self._stop_sent = True
                offset_s = time.monotonic() - self.start_mono + STOP_AHEAD_S
                for w in self._workers:
                    w.send({"stop_at": offset_s})
            try:
                worker, message = messages.get(timeout=0.2)
            except queue.Empty:
                continue
            if message is None:
                worker.gone = True
                if worker.done is None:
                    self.stop()  # the rest cannot make a whole run: stop them now, not at the end of a soak
            else:
                self._heard(worker, message)
            self._emit_ready()  # a worker gone owes no more seconds: the ones it held back may be due

    def _heard(self, worker: WorkerProcess | _RemoteWorker, message: dict) -> None:
        worker.heard(message)
        if "second" in message:
            worker.position = message["second"]["position"]
            self.rows.setdefault(message["second"]["t_s"], {})[self._workers.index(worker)] = message["second"]
        elif "done" in message:
            last = message["done"]["last"]
            worker.position = last["position"]
            # Its last, partial interval is its row of the second it ended in; it owes no later one.
            self.rows.setdefault(last["t_s"], {})[self._workers.index(worker)] = last
            worker.done = message["done"]

    def _emit_ready(self) -> None:
        """Each second, in order, once every worker still running has sent it (one that has ended
        owes no more): its sums, and its intervals added into the run's logs."""
        while self.rows:
            t_s = min(self.rows)
            rows = self.rows[t_s]
            if any(k not in rows for k, w in enumerate(self._workers) if w.done is None and not w.gone):
                return
            del self.rows[t_s]
            intervals = {}
            for name in LOAD_HISTOGRAMS:
                interval = new_histogram()
                for k, row in rows.items():
                    if name in row["histograms"]:
                        own = _decode(row["histograms"][name])
                        add(interval, own)
                        if name == E2E:
                            add(self._workers[k].e2e, own)
                self._logs[name].write(interval, t_s - 1.0, t_s)
                add(self.totals[name], interval)
                intervals[name] = interval
            rows = rows.values()
            second = Second(t_s, sum(r["offered"] for r in rows), sum(r["finished"] for r in rows),
                            sum(r["in_flight"] for r in rows), self.backlog(),
                            summary_ms(intervals[E2E])["p99"], summary_ms(self.totals[E2E])["p99"])
            self.seconds.append(second)
            self.on_second(second)

    def _result(self) -> LoadResult:
        done = [w.done for w in self._workers]
        # A worker's position: every order of its own numbered up to it has started, and the next
        # was not due before the common end (the load's, or an interruption's stop_at). The smallest
        # position is the run's count: its next order is the first that no worker started.
        started = min(d["position"] for d in done)
        counts = StartCounts(int(self.start_mono * 1e6))
        for d in done:
            for i, n in enumerate(d["start_counts"]):
                if i >= len(counts.counts):
                    counts.counts.extend([0] * (i + 1 - len(counts.counts)))
                counts.counts[i] += n
            counts.total += d["started"]
            for key, n in d["batching"].items():
                self.batching.totals[key] = self.batching.totals.get(key, 0) + n
        total = lambda key: sum(d[key] for d in done)
        return LoadResult(
            started_count=started, finished_count=total("finished_count"), start_counts=counts,
            start_s=self.start_mono, start_wall_s=self.start_wall_s, measure_start_s=self.measure_start_s,
            measure_end_s=self.measure_end_s, offered_in_window=total("offered_in_window"),
            scheduled_in_window=total("scheduled_in_window"), finished_in_window=total("finished_in_window"),
            send_failures=total("send_failures"), seconds=self.seconds,
            interrupted=self.stop_requested.is_set() or any(d["interrupted"] for d in done),
            histograms=self.totals, clock=done[0]["clock"])

    def describe(self) -> list[dict]:
        """summary.json's ``load_workers``: each worker's orders, measured endings and CPU."""
        return [{"orders": w.done["started"], "e2e_count": w.done["counts"].get(E2E, 0),
                 "e2e_p50_ms": summary_ms(w.e2e)["p50"],
                 "cpu_s": round(w.usage().cpu_s, 3), "others_ignored": w.done["others"],
                 "host": w.host.name if isinstance(w, _RemoteWorker) else None}
                for w in self._workers if w.done is not None]

    def close(self) -> None:
        """Every worker gone (told to stop, then killed); placed workers' logs fetched into the run's."""
        for w in self._workers:
            w.close(self._log_dir)


if __name__ == "__main__":
    sys.exit(worker_main())
