"""The audit, live: a process that follows every saga topic during the run and judges orders as they end.

The run (:mod:`bench.run`) starts it before the load (:class:`AuditFollower`); it reads every
partition of the pattern's topics from the beginning via assign() (no group, no commits), folds
the records into a :class:`bench.run.audit.Auditor`, and about once a second judges and forgets the
orders that ended :data:`bench.run.audit.GRACE_S` ago and writes the per-step latency seconds no
unjudged order can add to (:class:`bench.results.step_logs.StepLogs`). So its memory follows what is in
flight, and the verdict comes a few seconds after the load's end, not after a read of the whole log.

Its own process: it does not take the load generator's GIL, its CPU is read from /proc like a
service's and shows in ``cost`` as ``auditor``. The parent talks to it in JSON lines on stdin:

- ``{"start": {"start_s", "start_wall_s", "measure_start_s", "measure_end_s"}}`` when the load starts;
- ``{"started": n}`` as orders start (orders 1 .. n were started);
- ``{"end": n}`` once the load, the drain and the services are over: it reads every partition to
  the end offsets it finds then, judges the rest, writes ``audit.json`` and exits;
- ``{"stop": true}``: interrupted; it stops reading, judges what it read ("audited as far as it
  went", ``read_to_end: false``), writes ``audit.json`` and exits.

It prints ``READY`` once assigned, then ``PROGRESS {json}`` about once a second. It ignores the
terminal's Ctrl-C (its own process group) and obeys its parent: when stdin closes or the parent
is gone it exits without a report.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from bench import inputs, patterns
from bench.flow import events as ev
from bench.flow.workload import load_workload
from bench.kafka import clients
from bench.kafka.errors import BrokerError
from bench.kafka.records import watermarks
from bench.results.step_logs import StepLogs
from bench.run import heap, procstat
from bench.run.audit import MAX_HOLD_S, Auditor, AuditReport, StartedOrders
from bench.run.progress import Progress, no_progress
from bench.run.supervisor import PARENT_ENV, parent_watch

REPORT = "audit.json"
ROLE = "auditor"
BATCH = 10_000  # messages per consume(): few wake-ups at full rate
AUDIT_NICE = 10  # CFS weight 110 against a service's 1024: about a tenth of a contended core
SETTLE_EVERY_S = 1.0
CHECK_EVERY_S = 2.0  # how often the end offsets are asked, to know how far every partition was read
# Answers kept: how far behind the log the follower may read and still know how far it read, and
# when what it reads was written (past MAX_HOLD_S, an order is judged whatever the reading says).
KEEP_ENDS = int(MAX_HOLD_S / CHECK_EVERY_S) + 10
STEP_SLACK_S = 5.0  # a step's second is written this long after no unjudged order can end a span in it
STEP_OPEN_MAX_S = 120.0  # ... and at the latest this long after it ended (a stuck order holds no memory)
READY_TIMEOUT_S = 60.0
# The cyclic collector is off (see main), so a cycle, once made, stays: hdrh's histograms refer to
# themselves, and a new one per step and second grew this process by 2.4 GB in 30 minutes at
# 5000 orders/s (the step logs now refill one per step). What cycles remain are freed by a full
# collection this often; it pauses the follower ~1 s with 150,000 orders in flight at 5000/s.
COLLECT_EVERY_S = 300.0


# --- the follower process ------------------------------------------------------------


class _Ends(threading.Thread):
    """Asks the end offset (high watermark) of every partition every CHECK_EVERY_S, with a consumer
    of its own (never assigned); the follower compares them with how far it read. (The admin
    client's list_offsets kept answering FENCED_LEADER_EPOCH for minutes after a broker failover.)"""

    def __init__(self, conf: dict, partitions: list[tuple[str, int]]) -> None:
        super().__init__(name="ends", daemon=True)
        self.consumer = Consumer({**conf, "client.id": "bench-auditor-ends"})
        self.partitions = partitions
        # The last few answers, newest last, each (asked_at, ends, answered_at): a follower some
        # seconds behind has read past an older one, though never past the newest while the topics
        # are written. Every record before ``ends`` was written by ``answered_at``; every record
        # written before ``asked_at`` is below ``ends``.
        self.recent: deque[tuple[float, dict[tuple[str, int], int], float]] = deque(maxlen=KEEP_ENDS)
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def ask(self, timeout_s: float) -> dict[tuple[str, int], int]:
        deadline = time.monotonic() + timeout_s
        return {tp: watermarks(self.consumer, TopicPartition(*tp), deadline)[1] for tp in self.partitions}

    def run(self) -> None:
        while not self.stopping.wait(CHECK_EVERY_S):
            asked_at = time.monotonic()
            try:
                answer = (asked_at, self.ask(10.0), time.monotonic())
                with self.lock:
                    self.recent.append(answer)
            except KafkaException:  # leadership moving, broker down: ask again next time
                continue
        self.consumer.close()


class _Follower:
    def __init__(self, args: argparse.Namespace) -> None:
        workload = load_workload(args.workload)
        self.topology = patterns.get(args.pattern).topology(workload.saga)
        extra = clients.read_properties(args.kafka_config) if args.kafka_config else {}
        conf = clients.consumer_config(args.bootstrap_servers, workload, f"bench-audit-{args.run_id}", extra)
        conf.update({"enable.partition.eof": True, "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     "client.id": "bench-auditor",
                     # Few, large fetches (a request costs the broker tens of microseconds whatever it
                     # carries), and a bounded prefetch: the auditor runs ~0.2 s behind, GRACE_S allows 30, and
                     # a full queue is memory held after a catch-up (16 MB is ~2 s of a 5000/s run).
                     "fetch.wait.max.ms": 200, "fetch.min.bytes": 262_144, "queued.max.messages.kbytes": 16_384})
        self.conf = conf
        self.consumer = Consumer(conf)
        self.out = Path(args.out)
        self.auditor = Auditor(self.topology, StartedOrders(args.run_id))
        self.steps: StepLogs | None = None
        self.positions: dict[tuple[str, int], int] = {}  # partition -> the next offset to read
        self.assigned: list[TopicPartition] = []
        self.eof_at: dict[tuple[str, int], float] = {}  # when each partition's latest end-of-partition was read
        self.read_to_s: float | None = None  # every partition was read to its end as of then
        self.control: queue.Queue = queue.Queue()
        self.isolation = conf.get("isolation.level", "read_uncommitted")
        self.garbage = Garbage()
        self.trim = heap.Trim()
        self.ends: _Ends | None = None  # the end offsets asked during the load
        self.written_by = 0.0  # every record read so far was in the log by then (never goes back)

    def assign(self) -> list[TopicPartition]:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            metadata = self.consumer.list_topics(timeout=10)
            missing = [t for t in self.topology.topics if t not in metadata.topics
                       or metadata.topics[t].error is not None]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # topics created a moment ago are not known to every broker yet
        partitions = [TopicPartition(t, p, OFFSET_BEGINNING) for t in self.topology.topics
                      if t in metadata.topics and metadata.topics[t].error is None
                      for p in sorted(metadata.topics[t].partitions)]
        self.consumer.assign(partitions)
        self.assigned = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
        self.positions = {(tp.topic, tp.partition): 0 for tp in partitions}
        return partitions

    def take(self, messages: list) -> None:
        """Fold a batch: the reading rules of :func:`bench.kafka.records.read_topics` (tombstones skipped,
        undecodable values kept as None, EOF noted as a position)."""
        if not messages:
            return
        # ev.decode's rule, inline (a call less per record): a value that is not JSON, or not an
        # object, is None; an object without a string orderId is counted undecodable by fold().
        fold, positions, loads = self.auditor.fold, self.positions, ev.loads
        # How far each partition was read: asked once a batch rather than noted per record.
        for tp in self.consumer.position(self.assigned):
            if tp.offset > positions[(tp.topic, tp.partition)]:  # OFFSET_INVALID (< 0): none read yet
                positions[(tp.topic, tp.partition)] = tp.offset
        self.auditor.written_by = self.date()
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    tp = (message.topic(), message.partition())
                    if message.offset() > positions.get(tp, 0):
                        positions[tp] = message.offset()
                    self.eof_at[tp] = time.monotonic()
                    continue
                if error.fatal():
                    raise KafkaException(error)
                continue  # transient (leadership moving): librdkafka recovers
            raw = message.value()
            if raw is None:
                continue  # a tombstone on the compacted saga state
            key = message.key()
            try:
                value = loads(raw)
            except ValueError:
                value = None
            if type(value) is not dict:
                value = None
            if key is None:
                fold(message.topic(), None, value, len(raw))
            else:
                fold(message.topic(), key.decode("utf-8", "replace"), value, len(raw) + len(key))

    def date(self) -> float:
        """A moment by which every record read so far was in the log: the earliest end offsets
        asked that reach every partition's position (now, when none does yet). The auditor dates
        the orders' ends by it, so how long it holds an order does not grow with how far behind
        the log it reads (:meth:`bench.run.audit.Auditor.settle`)."""
        if self.ends is not None:
            with self.ends.lock:
                recent = list(self.ends.recent)
            positions = self.positions
            for _, ends, answered_at in recent:
                if answered_at >= self.written_by and all(ends.get(tp, 0) >= at for tp, at in positions.items()):
                    self.written_by = answered_at
                    return answered_at
        self.written_by = max(self.written_by, time.monotonic())
        return self.written_by

    def reached(self, ends: dict[tuple[str, int], int], asked_at: float) -> bool:
        """Every partition read to ``ends`` (asked at ``asked_at``). Under read_committed the end of
        what can be read is the last stable offset, below the high watermark while a transaction
        is open (or after one was aborted, markers last): an end-of-partition read since counts."""
        positions, eof_at, committed = self.positions, self.eof_at, self.isolation == "read_committed"
        return all(positions.get(tp, 0) >= end or (committed and eof_at.get(tp, -1.0) >= asked_at)
                   for tp, end in ends.items())

    def handle(self, line: dict) -> str | None:
        if "start" in line:
            s = line["start"]
            self.steps = StepLogs(self.out, self.topology.step_names(), s["start_s"], s["start_wall_s"],
                                  s["measure_start_s"], s["measure_end_s"])
            self.auditor.spans = self.steps.sinks
        if "started" in line:
            self.auditor.started_up_to(int(line["started"]))
        if "end" in line:
            self.auditor.started_up_to(int(line["end"]))
            return "end"
        if line.get("stop"):
            return "stop"
        return None

    def advance(self, now: float) -> None:
        """About once a second: how far every partition was read (the newest answer reached since),
        then judge what is due."""
        if self.ends is not None:
            with self.ends.lock:
                recent = list(self.ends.recent)
            for asked_at, ends, _ in reversed(recent):
                if self.read_to_s is not None and asked_at <= self.read_to_s:
                    break
                if self.reached(ends, asked_at):
                    self.read_to_s = asked_at
                    break
        self.settle(now)

    def settle(self, now: float) -> None:
        if self.steps is None:
            return  # nothing to judge before the load started
        self.auditor.settle(now, self.read_to_s)
        oldest = self.auditor.oldest_open_s()
        bound = now - STEP_SLACK_S if self.read_to_s is None else min(now, self.read_to_s) - STEP_SLACK_S
        if oldest is not None:
            bound = min(bound, oldest)
        self.steps.flush(max(bound, now - STEP_OPEN_MAX_S))

    def progress(self, phase: str, left: int | None = None, total: int | None = None) -> None:
        a = self.auditor
        line = {"phase": phase, "records": a.records, "open_orders": len(a.active),
                "judged": a.judged.low + len(a.judged.above) - len(a.judged.holes),
                "open_step_seconds": self.steps.open_seconds() if self.steps else 0}
        if left is not None:
            line["left"] = left
        if total is not None:
            line["total"] = total
        print(f"PROGRESS {json.dumps(line)}", flush=True)

    def run(self) -> int:
        self.assign()
        ends_thread = self.ends = _Ends(self.conf, list(self.positions))
        ends_thread.start()
        print("READY", flush=True)
        parent_alive = parent_watch()
        next_settle = time.monotonic() + SETTLE_EVERY_S
        outcome = None
        while outcome is None:
            self.take(self.consumer.consume(BATCH, 0.25))
            while outcome is None and not self.control.empty():
                line = self.control.get()
                if line is None:  # stdin closed: the parent is gone
                    return 1
                outcome = self.handle(line)
            now = time.monotonic()
            if now >= next_settle:
                if not parent_alive():
                    return 1
                self.advance(now)
                self.progress("load")
                next_settle = now + SETTLE_EVERY_S
            if self.garbage.due():
                self.garbage.collect()
            self.trim.maybe(now)
        ends_thread.stopping.set()
        read_to_end = outcome == "end" and self.read_to_ends(parent_alive)
        self.write(read_to_end)
        return 0

    def read_to_ends(self, parent_alive: Callable[[], bool]) -> bool:
        """After the load: read every partition to the end offsets it has now (the services stopped)."""
        asker = _Ends(self.conf, list(self.positions))
        try:
            return self._read_to(asker, parent_alive)
        finally:
            asker.consumer.close()

    def _read_to(self, asker: _Ends, parent_alive: Callable[[], bool]) -> bool:
        ends = None
        while ends is None:
            asked_at = time.monotonic()
            try:
                ends = asker.ask(10.0)
            except KafkaException as exc:  # leadership moving after a failover (e.g. a fenced epoch): ask again;
                print(f"asking the end offsets: {exc}", file=sys.stderr, flush=True)  # the parent bounds the wait
                if self._stopped(parent_alive):
                    return False
                time.sleep(0.5)
        next_progress = time.monotonic() + SETTLE_EVERY_S
        while True:
            if self._stopped(parent_alive):
                return False
            if self.reached(ends, asked_at):
                return True
            self.take(self.consumer.consume(BATCH, 0.25))
            if self.garbage.due():
                self.garbage.collect()
            self.trim.maybe(time.monotonic())
            if time.monotonic() >= next_progress:
                # Judging goes on while the rest is read: an audit far behind at the load's end
                # would otherwise hold every order it reads until the end.
                self.advance(time.monotonic())
                left = sum(max(0, end - self.positions.get(tp, 0)) for tp, end in ends.items())
                self.progress("end", left)
                next_progress = time.monotonic() + SETTLE_EVERY_S

    def _stopped(self, parent_alive: Callable[[], bool]) -> bool:
        while not self.control.empty():
            line = self.control.get()
            if line is None or self.handle(line) == "stop":
                return True
        return not parent_alive()

    def write(self, read_to_end: bool) -> None:
        report = self.auditor.finish(progress=lambda judged, total: self.progress("judge", total - judged, total))
        report.read_to_end = read_to_end
        steps = self.steps.close() if self.steps is not None else {}
        body = {"audit": report.to_dict(), "steps": steps, "records": self.auditor.records,
                "reopened_step_seconds": self.steps.reopened if self.steps else 0, "peak_rss_kb": _peak_rss_kb(),
                "gc": self.garbage.to_dict(), "heap": self.trim.to_dict()}
        tmp = self.out / f".{REPORT}.tmp"
        tmp.write_text(json.dumps(body))
        tmp.rename(self.out / REPORT)
        print("DONE", flush=True)


class Garbage:
    """The auditor's own cyclic-garbage collection (the automatic one is off), and what it cost."""

    def __init__(self) -> None:
        self.collections = self.freed = 0
        self.longest_s = 0.0
        self.last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last >= COLLECT_EVERY_S

    def collect(self) -> None:
        began = time.monotonic()
        self.freed += gc.collect()
        self.last = time.monotonic()
        self.collections += 1
        self.longest_s = max(self.longest_s, self.last - began)

    def to_dict(self) -> dict:
        return {"collections": self.collections, "freed": self.freed, "longest_pause_ms": round(self.longest_s * 1e3, 1)}


def _peak_rss_kb() -> int | None:
    """This process's peak resident set (VmHWM), for the record: the audit's memory is bounded."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _read_control(control: queue.Queue) -> None:
    for line in sys.stdin:
        line = line.strip()
        if line:
            try:
                control.put(json.loads(line))
            except ValueError:
                continue
    control.put(None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run.live_audit", description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", required=True)
    parser.add_argument("--workload", required=True)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--kafka-config")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    # The terminal's Ctrl-C is the parent's to handle; the parent says "stop" or goes away.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Per-order state is dicts and lists without cycles: the cyclic collector would only walk
    # the ~100,000 live orders again and again.
    gc.disable()
    # The audit must not take the machine from the pattern under test: when the cores are
    # contended the services, the load and the broker run first, and the audit reads what they
    # wrote when they leave a core free (Kafka holds what it has not read yet, so falling behind
    # costs no memory here; it catches up while the run drains). Its CPU is still the run's cost.
    os.nice(AUDIT_NICE)
    follower = _Follower(args)
    control = threading.Thread(target=_read_control, args=(follower.control,), name="control", daemon=True)
    control.start()
    try:
        return follower.run()
    finally:
        follower.consumer.close()


# --- the parent's side ---------------------------------------------------------------


class AuditError(BrokerError):
    pass


class AuditFollower:
    """The live audit process of one run, as the run sees it."""

    def __init__(self, out: Path, pattern: str, workload_file: Path, bootstrap_servers: str, run_id: str,
                 kafka_config: Path | None, log_dir: Path, progress: Progress = no_progress) -> None:
        self.out, self.progress = out, progress
        cmd = [sys.executable, "-m", "bench.run.live_audit", "--pattern", pattern, "--workload", str(workload_file),
               "--bootstrap-servers", bootstrap_servers, "--run-id", run_id, "--out", str(out)]
        if kafka_config:
            cmd += ["--kafka-config", str(kafka_config)]
        self.log_path = log_dir / f"{ROLE}.log"
        with open(self.log_path, "ab") as log:
            # Its own process group: a Ctrl-C in the terminal reaches only the run, which tells it.
            self.process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                            env={**os.environ, PARENT_ENV: str(os.getpid())}, process_group=0)
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.done = threading.Event()
        self.latest: dict = {}
        self.reader = threading.Thread(target=self._read, name="auditor-reports", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        try:
            for line in self.process.stdout:
                if line.startswith(b"PROGRESS "):
                    self.latest = json.loads(line[len(b"PROGRESS "):])
                elif line.strip() == b"READY":
                    self.ready.set()
                elif line.strip() == b"DONE":
                    self.done.set()
        except (OSError, ValueError):
            pass
        self.ready.set()  # it exited: nobody waits for it any longer

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        if not self.ready.wait(timeout_s) or self.process.poll() is not None:
            raise AuditError(f"the live audit did not start (log {self.log_path}):\n{_tail(self.log_path)}")

    def _send(self, message: dict) -> None:
        with self.lock:
            try:
                self.process.stdin.write(json.dumps(message).encode() + b"\n")
                self.process.stdin.flush()
            except (OSError, ValueError):
                pass  # it is gone; result() says so

    def start(self, start_s: float, start_wall_s: float, measure_start_s: float, measure_end_s: float) -> None:
        self._send({"start": {"start_s": start_s, "start_wall_s": start_wall_s, "measure_start_s": measure_start_s,
                              "measure_end_s": measure_end_s}})

    def started(self, count: int) -> None:
        self._send({"started": count})

    def end(self, started_count: int) -> None:
        self._send({"end": started_count})

    def stop(self) -> None:
        """Interrupted: judge what was read, now."""
        self._send({"stop": True})

    def exited(self) -> bool:
        return self.process.poll() is not None

    def usage(self) -> procstat.Usage | None:
        return procstat.usage(self.process.pid) if self.process.poll() is None else None

    def result(self, timeout_s: float, interrupted: Callable[[], bool] = lambda: False) -> tuple[AuditReport, dict[str, dict]]:
        """Wait for its report (``stop()`` it when ``timeout_s`` passes or ``interrupted()``)."""
        deadline = time.monotonic() + timeout_s
        stopped = False
        while self.process.poll() is None:
            if not stopped and (time.monotonic() >= deadline or interrupted()):
                self.stop()
                stopped, deadline = True, time.monotonic() + 30.0
            elif stopped and time.monotonic() >= deadline:
                self.kill()
                break
            latest = self.latest
            if latest.get("phase") == "end" and "left" in latest:
                read, left = latest["records"], latest["left"]
                self.progress("audit: reading the rest of every topic", read, read + left)
            elif latest.get("phase") == "judge":
                total = latest["total"]
                self.progress("audit: judging the orders still open", total - latest["left"], total)
            time.sleep(0.05)
        path = self.out / REPORT
        if not path.exists():
            raise AuditError(f"the live audit wrote no report (exit {self.process.poll()}; log {self.log_path}):\n"
                             f"{_tail(self.log_path)}")
        body = inputs.read_json(path, "the live audit's report", AuditError)
        return report_from_dict(body["audit"]), body["steps"]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        """Make sure it is gone (closing stdin tells it to go; then it is killed)."""
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(5.0)
        except subprocess.TimeoutExpired:
            self.kill()
        if self.process.stdout:
            self.process.stdout.close()


def report_from_dict(audit: dict) -> AuditReport:
    names = {f for f in AuditReport.__dataclass_fields__}
    return AuditReport(**{k: v for k, v in audit.items() if k in names})


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


if __name__ == "__main__":
    sys.exit(main())
