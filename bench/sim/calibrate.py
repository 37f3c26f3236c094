"""`bench calibrate`: measure on a real broker what the model needs, and write it as a profile.

Phases, each on freshly created topics (as ``bench run`` makes them):

1. transport: produce -> consume with ``linger.ms=0`` and the runtime's consumer
   settings and poll loop, at a modest rate, on a topic no service reads, first
   alone, then beside background traffic of increasing rate in another process
   (:mod:`bench.sim.traffic`): how the broker and the machine slow a hop as the
   load grows. Also the schedule slip of an open-loop sender.
2. hop: the same through a real ``bench serve`` payment service (choreography)
   with the workload's client settings: input produced -> output produced. While
   that stream runs, a second instance joins the group and later leaves it:
   the longest stall each rebalance causes is the rebalance pause.
   The main thread's CPU per message of that slow stream, beyond the drain's,
   is what waking from a long sleep costs (``batch``).
3. service cost: a backlog of messages drained by a real service, with the
   main thread's CPU time (what serialises an instance) and the whole process's
   (what competes for the host's cores) read from /proc: payment (one output per
   input), the order service on events it ignores (no output), the orchestrator
   beside its three services (so its sagas finish, as in a run).
4. the real load generator (:class:`bench.run.load.LoadGenerator`) for two seconds:
   its CPU per order.

The broker's CPU at each traffic level is read from the JVM when the broker is
the embedded one on this machine (``BENCH_BROKER_DIR`` names its state); the
broker's CPU in a whole run and the wait for cores on a busy host are fitted to
real runs afterwards (:mod:`bench.sim.fit`, ``bench calibrate --reference``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import orjson
import yaml
from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

from bench.errors import BadInput
from bench.kafka import clients, secrets, topics
from bench.kafka.errors import BrokerError
from bench.results import files as results
from bench.flow import events as ev
from bench.broker import dist, embedded
from bench.run.load import LoadGenerator
from bench.patterns import PATTERNS
from bench.patterns.choreography import CHOREOGRAPHY
from bench.patterns.orchestration import ORCHESTRATION
from bench.run.runtime import BATCH_MAX, POLL_S
from bench.flow.saga import DEFAULT as SAGA
from bench.sim.profile import Distribution, LoadPoint, Profile
from bench.run.supervisor import Supervisor
from bench.flow.workload import Workload

Echo = Callable[[str], None]
# Calibration measures the default saga's services; the model scales their costs to any saga.
TOPOLOGIES = {name: pattern.topology(SAGA) for name, pattern in PATTERNS.items()}
PAYMENT = SAGA.steps[0]  # the step the single-service probes run


@dataclass(frozen=True)
class CalibrationRequest:
    workload: Workload
    bootstrap_servers: str
    kafka_config: Path | None = None
    quick: bool = False  # seconds instead of a minute: fewer samples, for tests

    @property
    def probe_s(self) -> float:
        return 2.0 if self.quick else 4.0

    @property
    def rounds(self) -> int:
        return 1 if self.quick else 3

    @property
    def probe_rate_per_s(self) -> float:
        return 300.0

    @property
    def backlog(self) -> int:
        return 3000 if self.quick else 20000

    @property
    def traffic_levels(self) -> tuple[float, ...]:
        """Background messages/s beside which the transport is measured."""
        return (0.0, 10000.0) if self.quick else (0.0, 4000.0, 12000.0)


def _run_s(schedstat: Path) -> float:
    """Time a task has run on a CPU, from its schedstat (nanoseconds; /proc/<pid>/stat counts 10 ms ticks)."""
    return int(schedstat.read_text().split()[0]) / 1e9


def main_thread_cpu_s(pid: int) -> float | None:
    try:
        return _run_s(Path(f"/proc/{pid}/task/{pid}/schedstat"))
    except OSError:
        return None


def process_cpu_s(pid: int) -> float | None:
    """CPU time of every live thread of ``pid``."""
    total = 0.0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            total += _run_s(task / "schedstat")
        except OSError:
            pass  # a thread that just ended
    return total


class _Reader(threading.Thread):
    """Consumes a topic from its end with the runtime's poll loop; keeps (receive ns, event)."""

    def __init__(self, conf: dict, topic: str, partitions: int) -> None:
        super().__init__(name=f"calibrate-{topic}", daemon=True)
        self.consumer = Consumer(conf)
        self.consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in range(partitions)])
        self.received: list[tuple[int, dict]] = []
        self.stopping = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                first = self.consumer.poll(POLL_S)
                self.ready.set()  # the first poll has resolved the end offsets
                if first is None:
                    continue
                now = time.monotonic_ns()  # ev.now_us's clock, which stamped ts_us
                for msg in [first, *self.consumer.consume(BATCH_MAX - 1, 0)]:
                    if msg.error() is None:
                        self.received.append((now, orjson.loads(msg.value())))
        finally:
            self.consumer.close()

    def wait_for(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return len(self.received) >= count

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


@contextlib.contextmanager
def _reading(conf: dict, topic: str, partitions: int) -> Iterator[_Reader]:
    reader = _Reader(conf, topic, partitions)
    reader.start()
    reader.ready.wait(10)
    try:
        yield reader
    finally:
        reader.stop()


def _warm_up(producer: Producer, topic: str, reader: _Reader, seconds: float = 1.0) -> None:
    """Until the producer has its id and every partition's path is warm; what arrives is dropped."""
    _paced(producer, topic, 100.0, seconds, lambda i: {"orderId": f"warm-up-{i}", "status": "warm-up"})
    reader.wait_for(int(100 * seconds), 30)
    time.sleep(0.2)
    reader.received.clear()


def _paced(producer: Producer, topic: str, rate_per_s: float, seconds: float, make: Callable[[int], dict],
           stop: threading.Event | None = None) -> list[float]:
    """Send ``make(i)`` on an open-loop schedule for ``seconds`` (or until ``stop`` is set);
    returns each send's slip in microseconds."""
    start = time.monotonic()
    slips = []
    for i in range(int(rate_per_s * seconds)):
        if stop is not None and stop.is_set():
            break
        target = start + i / rate_per_s
        while (now := time.monotonic()) < target:
            time.sleep(min(target - now, 0.01))
        event = make(i)
        event["ts_us"] = event["t0_us"] = ev.now_us()  # t0_us rides along to a service's output
        slips.append((time.monotonic() - target) * 1e6)
        producer.produce(topic, orjson.dumps(event), event["orderId"])
        producer.poll(0)
    producer.flush(30)
    return slips


class Calibration:
    """One calibration: its clients, topics and service processes."""

    def __init__(self, request: CalibrationRequest, scratch: Path, echo: Echo) -> None:
        self.request, self.echo = request, echo
        w = self.workload = request.workload
        self.extra = clients.read_properties(request.kafka_config) if request.kafka_config else {}
        self.bootstrap = request.bootstrap_servers
        admin_conf = clients.admin_config(self.bootstrap, self.extra)
        self.admin = topics.admin(admin_conf)
        topics.check_reachable(self.admin, self.bootstrap)
        self.cluster = embedded.running_at(self.bootstrap)
        self.run_id = uuid.uuid4().hex[:8]
        self.registry = topics.Registry(self.admin, admin_conf, f"calibrate-{self.run_id}")
        self.scratch = scratch
        self.workload_file = scratch / "workload.yaml"
        self.workload_file.write_text(yaml.safe_dump(w.to_source(), sort_keys=False))
        self.consumer_conf = clients.consumer_config(self.bootstrap, w, f"bench-calibrate-{self.run_id}", self.extra)
        self.producer = Producer(clients.producer_config(self.bootstrap, w, self.extra))

    # --- helpers -------------------------------------------------------------

    def fresh_topics(self) -> None:
        names = sorted({t for p in TOPOLOGIES.values() for t in p.topics})
        compacted = sorted({t for p in TOPOLOGIES.values() for t in p.compacted})
        topics.recreate(self.admin, names, self.workload, compacted=compacted, registry=self.registry)

    @contextlib.contextmanager
    def services(self, pattern: str, roles: dict[str, int]) -> Iterator[Supervisor]:
        args = ["--pattern", pattern, "--workload", str(self.workload_file), "--bootstrap-servers", self.bootstrap,
                "--group-prefix", f"bench-calibrate-{self.run_id}-{pattern}-{'-'.join(roles)}"]
        if self.request.kafka_config:
            args += ["--kafka-config", str(self.request.kafka_config)]
        supervisor = Supervisor(args, self.scratch)
        try:
            supervisor.start(roles)
            yield supervisor
        finally:
            supervisor.stop()

    def broker_cpu_s(self) -> float | None:
        if self.cluster is None:
            return None
        values = [process_cpu_s(node.pid) for node in self.cluster.alive_nodes()]
        return None if any(v is None for v in values) else sum(values)

    # --- phases --------------------------------------------------------------

    def transport(self) -> dict:
        """Produce -> consume without linger, beside increasing background traffic, in rounds
        (each level's distribution is the quantile-wise median over rounds); the open-loop
        sender's slip; the broker's CPU and the host's utilisation at each level."""
        req = self.request
        producer = Producer(clients.producer_config(self.bootstrap, self.workload, {**self.extra, "linger.ms": 0}))
        probes: dict[float, list[dict]] = {rate: [] for rate in req.traffic_levels}
        with _reading(self.consumer_conf, ev.DEAD_LETTER, self.workload.partitions) as reader:
            _warm_up(producer, ev.DEAD_LETTER, reader)
            for _ in range(req.rounds):
                for rate in req.traffic_levels:
                    with self._traffic(rate) as traffic:
                        probe = self._probe(producer, reader)
                    probe["traffic_per_s"] = traffic["produced"] / traffic["seconds"] if rate else 0.0
                    probes[rate].append(probe)
        points = [self._load_point(rounds) for rounds in probes.values()]
        return {"points": points, "slips_us": [s for p in probes[req.traffic_levels[0]] for s in p["slips_us"]]}

    def _load_point(self, rounds: list[dict]) -> LoadPoint:
        transport = Distribution.median_of([Distribution.of_samples(p["latencies_us"]) for p in rounds])
        broker = [p["broker_s"] / p["seconds"] for p in rounds if p["broker_s"] is not None]
        point = LoadPoint(round(float(np.mean([p["traffic_per_s"] for p in rounds])), 1), transport,
                          round(float(np.median([p["utilisation"] for p in rounds])), 3),
                          round(float(np.median(broker)), 4) if broker else None)
        self.echo(f"transport beside {point.messages_per_s:.0f} msg/s: p50 {transport.quantile(0.5):.0f} us, "
                  f"p99 {transport.quantile(0.99):.0f} us, host CPU {point.utilisation:.0%}"
                  + (f", broker {point.broker_cores:.2f} cores" if point.broker_cores is not None else ""))
        return point

    @contextlib.contextmanager
    def _traffic(self, rate: float) -> Iterator[dict]:
        """Background traffic at ``rate`` messages/s in its own process while the block runs."""
        seconds = self.request.probe_s + 1.0
        figures = {"produced": 0, "seconds": seconds}
        if not rate:
            yield figures
            return
        process = subprocess.Popen([sys.executable, "-m", "bench.sim.traffic", str(rate), str(seconds), self.bootstrap,
                                    str(self.workload_file), SAGA.steps[1].events_topic],  # the probes do not read it
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            time.sleep(0.7)  # connected and up to speed
            yield figures
            out, _ = process.communicate(timeout=60)
            figures["produced"] = int(out.split()[0]) if out.strip() else 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    def _probe(self, producer: Producer, reader: _Reader) -> dict:
        req = self.request
        reader.received.clear()
        n = int(req.probe_rate_per_s * req.probe_s)
        broker_before, host_before, began = self.broker_cpu_s(), _host_jiffies(), time.monotonic()
        slips = _paced(producer, ev.DEAD_LETTER, req.probe_rate_per_s, req.probe_s,
                       lambda i: {"orderId": f"probe-{i}", "status": "probe"})
        host_after, broker_after, seconds = _host_jiffies(), self.broker_cpu_s(), time.monotonic() - began
        reader.wait_for(n, 30)
        latencies = [(recv_ns / 1000 - e["ts_us"]) for recv_ns, e in reader.received]
        return {"latencies_us": latencies, "slips_us": slips, "utilisation": _busy_fraction(host_before, host_after),
                "seconds": seconds, "broker_s": _delta(broker_before, broker_after)}

    def hop_and_rebalance(self) -> tuple[Distribution, float, float, dict]:
        """Through a real payment service; a second instance joins mid-stream and leaves again."""
        req = self.request
        self.fresh_topics()
        with self.services(CHOREOGRAPHY.name, {PAYMENT.name: 1}) as supervisor, \
                _reading(self.consumer_conf, PAYMENT.events_topic, self.workload.partitions) as reader:
            pid = supervisor.instances[f"{PAYMENT.name}-0"].process.pid
            _warm_up(self.producer, ev.ORDER_CREATED, reader)
            main_before, own_before = main_thread_cpu_s(pid), time.process_time()
            n = int(req.probe_rate_per_s * req.probe_s)
            _paced(self.producer, ev.ORDER_CREATED, req.probe_rate_per_s, req.probe_s,
                   lambda i: {"orderId": f"hop-{self.run_id}-{i}", "status": ev.CREATED})
            reader.wait_for(n, 30)
            trickle_main_s = _delta(main_before, main_thread_cpu_s(pid))
            # This process sent each order on schedule and read its answer: a load generator's work.
            sender_s = time.process_time() - own_before
            hops = [e["ts_us"] - e["t0_us"] for _, e in reader.received]
            pauses, startup_s = self._rebalances(supervisor, reader)
        self.echo(f"hop through a service: p50 {np.median(hops):.0f} us, p99 {np.percentile(hops, 99):.0f} us; "
                  f"rebalance pauses {', '.join(f'{p:.2f}s' for p in pauses)}")
        trickle = {"main_s": trickle_main_s, "messages": n, "sender_s": sender_s}
        return Distribution.of_samples(hops), float(np.mean(pauses)), startup_s, trickle

    def _rebalances(self, supervisor: Supervisor, reader: _Reader) -> tuple[list[float], float]:
        """During a steady stream, instance 1 joins the group and, 2 s after it is ready, leaves it.
        Each rebalance stalls the stream: the pause is the longest gap between outputs around
        the change, less the stream's normal gap."""
        rate = 100.0
        stop = threading.Event()
        first = len(reader.received)
        sent: list[float] = []
        stream = threading.Thread(target=lambda: sent.extend(_paced(
            self.producer, ev.ORDER_CREATED, rate, 120.0,
            lambda i: {"orderId": f"rebalance-{self.run_id}-{i}", "status": ev.CREATED}, stop)), daemon=True)
        stream.start()
        time.sleep(1.0)
        spawned_us = ev.now_us()
        supervisor.spawn(PAYMENT.name, 1)
        supervisor.wait_ready([supervisor.instances[f"{PAYMENT.name}-1"]])
        startup_s = (ev.now_us() - spawned_us) / 1e6
        time.sleep(2.0)
        left_us = ev.now_us()
        supervisor.signal(f"{PAYMENT.name}-1", signal.SIGTERM)  # it commits and leaves its group
        time.sleep(3.0)
        stop.set()
        stream.join(30)
        reader.wait_for(first + len(sent), 30)
        outputs = np.array(sorted(e["ts_us"] for _, e in reader.received[first:]), dtype=float)
        pauses = [_longest_gap_s(outputs, spawned_us, left_us), _longest_gap_s(outputs, left_us, left_us + 3e6)]
        return [max(0.0, p - 1.0 / rate) for p in pauses], startup_s

    def drain(self, pattern: str, role: str, topic: str, events: list[tuple[int, dict]], out_topic: str,
              expected: int, beside: tuple[str, ...] = ()) -> dict:
        """A backlog drained by a real service (with the roles ``beside`` it running too): the
        measured role's main-thread and process CPU, and the messages on every topic after."""
        self.fresh_topics()
        with self.services(pattern, {role: 1, **dict.fromkeys(beside, 1)}) as supervisor, \
                _reading(self.consumer_conf, out_topic, self.workload.partitions) as reader:
            pid = supervisor.instances[f"{role}-0"].process.pid
            time.sleep(0.5)
            main_before, process_before, broker_before = main_thread_cpu_s(pid), process_cpu_s(pid), self.broker_cpu_s()
            began, own_before = time.monotonic(), time.process_time()
            for partition, event in events:
                event["ts_us"] = ev.now_us()
                while True:
                    try:
                        self.producer.produce(topic, orjson.dumps(event), event["orderId"], partition=partition)
                        break
                    except BufferError:
                        self.producer.poll(0.01)
            self.producer.flush(30)
            if not reader.wait_for(expected, 120):
                raise RuntimeError(f"{pattern} {role}: {len(reader.received)} of {expected} outputs within 120 s")
            sender_s = time.process_time() - own_before
            time.sleep(0.2)
            n = len(events)
            figures = {"main_s": _delta(main_before, main_thread_cpu_s(pid)),
                       "process_s": _delta(process_before, process_cpu_s(pid)),
                       "broker_s": _delta(broker_before, self.broker_cpu_s()), "messages": n,
                       "seconds": time.monotonic() - began, "sender_s": sender_s,
                       "on_topics": self.messages_on(TOPOLOGIES[pattern].topics)}
        self.echo(f"{pattern} {role}: {n} messages, main thread {figures['main_s'] / n * 1e6:.1f} us/msg, "
                  f"process {figures['process_s'] / n * 1e6:.1f} us/msg")
        return figures

    def load_generator(self) -> dict:
        """The real open-loop load generator (bench.run.load) sending for a few seconds, no service
        answering: its CPU per order sent (the reader's share is added from terminal_us)."""
        self.fresh_topics()
        rate = 1000.0 if self.request.quick else 2000.0
        workload = self.workload.with_overrides(rate_per_s=rate, duration_s=2.0, warmup_s=0.5, drain_s=0.0)
        generator = LoadGenerator(self.bootstrap, workload, self.scratch, f"calibrate-{self.run_id}", self.extra)
        began = time.process_time()
        result = generator.run()
        figures = {"cpu_s": time.process_time() - began, "orders": result.started_count}
        self.echo(f"load generator: {figures['cpu_s'] / figures['orders'] * 1e6:.1f} us of CPU per order sent "
                  f"at {rate:g}/s")
        return figures

    def messages_on(self, names) -> dict[str, int]:
        """Messages on each (freshly created) topic: the sum of its partitions' high watermarks."""
        consumer = Consumer({**self.consumer_conf, "group.id": f"bench-calibrate-count-{self.run_id}"})
        try:
            return {topic: sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                               for p in range(self.workload.partitions)) for topic in names}
        finally:
            consumer.close()

    def costs(self) -> dict[str, dict]:
        n, parts = self.request.backlog, self.workload.partitions
        created = [(i % parts, {"orderId": f"drain-{self.run_id}-{i}", "status": ev.CREATED}) for i in range(n)]
        one_out = self.drain(CHOREOGRAPHY.name, PAYMENT.name, ev.ORDER_CREATED, created, PAYMENT.events_topic, n)
        ignored = [(i % parts, {"orderId": f"ignored-{self.run_id}-{i}", "status": PAYMENT.ok}) for i in range(n)]
        markers = [(p, {"orderId": f"marker-{self.run_id}-{p}", "status": SAGA.pivot.ok}) for p in range(parts)]
        no_out = self.drain(CHOREOGRAPHY.name, CHOREOGRAPHY.coordinator, PAYMENT.events_topic, ignored + markers, ev.ORDER_EVENTS, parts)
        # The orchestrator with its services, so sagas finish as in a run (held sagas would cost it more).
        created = [(i % parts, {"orderId": f"orch-{self.run_id}-{i}", "status": ev.CREATED}) for i in range(n)]
        orchestrator = self.drain(ORCHESTRATION.name, ORCHESTRATION.coordinator, ev.ORDER_CREATED, created, ev.ORDER_EVENTS, n,
                                  beside=SAGA.names)
        return {"one_out": one_out, "no_out": no_out, "orchestrator": orchestrator}


def _longest_gap_s(stamps_us: np.ndarray, from_us: float, until_us: float) -> float:
    """The longest time without an output, among outputs stamped in [from_us, until_us]."""
    inside = stamps_us[(stamps_us >= from_us) & (stamps_us <= until_us)]
    return float(np.max(np.diff(inside))) / 1e6 if len(inside) > 1 else 0.0


def _host_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def _busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def terminal_us(samples: int = 2000) -> float:
    """What the load generator's reader spends on one terminal event: decode, record latency twice."""
    import tempfile as _tempfile

    from bench.results.recording import IntervalRecorder

    value = orjson.dumps({"orderId": "x-1", "status": ev.COMPLETED, "t0_us": 1, "ts_us": 2})
    with _tempfile.TemporaryDirectory() as scratch:
        recorders = [IntervalRecorder(n, Path(scratch) / f"{n}.hlog", time.time()) for n in ("a", "b")]
        began = time.process_time()
        for i in range(samples):
            event = orjson.loads(value)
            for recorder in recorders:
                recorder.record_us(1000 + i + event["t0_us"])
        spent = time.process_time() - began
        for recorder in recorders:
            recorder.close()
    return spent / samples * 1e6


def load_generator_costs(sender: dict, trickle: dict, trickle_rate_per_s: float) -> dict[str, float]:
    """The real load generator's CPU per order at a moderate rate, plus its reader's per terminal
    event; and what waking up on a slow schedule costs on top (the trickle, per second)."""
    order_us = sender["cpu_s"] / sender["orders"] * 1e6 + terminal_us()
    trickle_us = trickle["sender_s"] / trickle["messages"] * 1e6
    return {"order_us": round(order_us, 1),
            "idle_cores": round(max(0.0, trickle_us - order_us) * trickle_rate_per_s / 1e6, 4)}


def sleep_costs(samples: int = 200, sleep_s: float = 0.002) -> dict[str, float]:
    """What ``time.sleep`` costs beyond what was asked (the workload's processing time is a sleep):
    how much longer it sleeps, ``overshoot_us``, and the process CPU of going to sleep and waking
    on the timer, ``cpu_us``, which a service with processing time pays per message (this thread's
    CPU only: librdkafka's threads of the calibration's clients are not the sleep's)."""
    over = 0.0
    cpu_start = time.thread_time()
    for _ in range(samples):
        start = time.perf_counter()
        time.sleep(sleep_s)
        over += time.perf_counter() - start - sleep_s
    return {"overshoot_us": over / samples * 1e6, "cpu_us": (time.thread_time() - cpu_start) / samples * 1e6}


def per_message_costs(costs: dict[str, dict], key: str) -> dict[str, float]:
    """Solve for the cost of a consumed and of a produced message (payment: one out per input;
    order service: none), then how the orchestrator's cost compares with what those predict."""
    cost_in = costs["no_out"][key] / costs["no_out"]["messages"] * 1e6
    cost_out = max(0.0, costs["one_out"][key] / costs["one_out"]["messages"] * 1e6 - cost_in)
    orch = costs["orchestrator"]
    topics = orch["on_topics"]
    inputs = topics[ev.ORDER_CREATED] + topics[ev.REPLIES]
    outputs = (sum(topics[s.commands_topic] for s in SAGA.steps)
               + topics[ev.SAGA_STATE] + topics[ev.ORDER_EVENTS])
    predicted_us = inputs * cost_in + outputs * cost_out
    scale = orch[key] * 1e6 / predicted_us if predicted_us > 0 else 1.0
    return {"in": round(cost_in, 2), "out": round(cost_out, 2), "orchestrator_scale": round(scale, 3)}


CLAIM_S = 900.0  # a full calibration takes about two minutes; the claim lapses well after


def calibrate(request: CalibrationRequest, echo: Echo = print) -> Profile:
    w = request.workload
    with tempfile.TemporaryDirectory(prefix="bench-calibrate-") as scratch:
        cal = Calibration(request, Path(scratch), echo)
        with cal.registry.claim(CLAIM_S):
            cal.fresh_topics()
            echo(f"calibrating against {request.bootstrap_servers} ({'quick' if request.quick else 'full'})")
            transport = cal.transport()
            hop, rebalance_s, startup_s, trickle = cal.hop_and_rebalance()
            costs = cal.costs()
            sender = cal.load_generator()
    main = per_message_costs(costs, "main_s")
    process = per_message_costs(costs, "process_s")
    trickle_per_msg_us = trickle["main_s"] / trickle["messages"] * 1e6 if trickle["main_s"] is not None else 0.0
    main["batch"] = round(max(0.0, trickle_per_msg_us - main["in"] - main["out"]), 2)
    process["batch"] = main["batch"]
    session_ms = clients.consumer_config(request.bootstrap_servers, w, "x", {})["session.timeout.ms"]
    linger_us = float(w.client.get("linger.ms", 5)) * 1000
    sleeping = sleep_costs()
    return Profile(
        transport=tuple(transport["points"]),
        hop_us=hop,
        wakeup_us=Distribution.excess(hop, transport["points"][0].transport_us, linger_us + main["in"] + main["out"]),
        linger_ms=float(w.client.get("linger.ms", 5)),
        service_us=main,
        service_cpu_us=process,
        cores=os.cpu_count() or 1,
        load_generator=load_generator_costs(sender, trickle, request.probe_rate_per_s),
        sleep_overshoot_us=round(sleeping["overshoot_us"], 1),
        sleep_cpu_us=round(sleeping["cpu_us"], 1),
        rebalance_s=round(rebalance_s, 3),
        startup_s=round(startup_s, 3),
        session_timeout_s=float(session_ms) / 1000,
        slip_us=Distribution.of_samples(transport["slips_us"]),
        measured={
            "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "bootstrap_servers": request.bootstrap_servers,
            "workload": w.name,
            "client": secrets.client(dict(w.client)),  # a workload may carry credentials
            "acks": w.acks,
            "partitions": w.partitions,
            "quick": request.quick,
            "kafka": dist.KAFKA_VERSION if cal.cluster is not None else None,
            "environment": {k: v for k, v in results.environment().items() if k != "git"},
        },
    )


REPLICATION_TOPIC = "bench-calibrate-replication"


def with_replication(profile: Profile, request: CalibrationRequest, echo: Echo = print) -> Profile:
    """``profile`` with replication and the network round trip measured (:func:`replication`)."""
    measured = replication(request, echo)
    echo(f"replication_us = {measured['replication_us']:g}, network_rtt_us = {measured['network_rtt_us']:g}")
    return dataclasses.replace(profile, replication_us=measured["replication_us"],
                               network_rtt_us=measured["network_rtt_us"],
                               measured={**profile.measured, "replication": measured["measured"]})


def replication(request: CalibrationRequest, echo: Echo = print) -> dict:
    """What the model's multi-broker and multi-host placements assume, measured on a cluster of three
    or more brokers: the time replication adds to a produce (``replication_us``: acks=all minus
    acks=1, one message at a time, the two interleaved message by message on one topic with
    replication factor 3 and min.insync.replicas 2) and the network round trip from here to the
    brokers (``network_rtt_us``: a TCP handshake with each broker minus one with a listener on
    loopback, so brokers on this host give about 0)."""
    extra = clients.read_properties(request.kafka_config) if request.kafka_config else {}
    admin_conf = clients.admin_config(request.bootstrap_servers, extra)
    admin = topics.admin(admin_conf)
    brokers = topics.check_reachable(admin, request.bootstrap_servers)
    if brokers < 3:
        raise BadInput(f"--replication: the cluster at --bootstrap-servers has {brokers} broker(s); replication is "
                       "measured on 3 or more (e.g. `bench broker start --nodes 3`)")
    w = request.workload.with_overrides(partitions=1, replication_factor=3, min_insync_replicas=2)
    registry = topics.Registry(admin, admin_conf, f"calibrate-{uuid.uuid4().hex[:8]}")
    samples = 200 if request.quick else 1000
    with registry.claim(CLAIM_S):
        topics.recreate(admin, [REPLICATION_TOPIC], w, registry=registry)
        try:
            base = clients.producer_config(request.bootstrap_servers, w, extra)
            # No linger: each send is one request, so its round trip is the broker's and replication's.
            producers = {acks: Producer({**base, "acks": acks, "linger.ms": 0, "enable.idempotence": acks == "all"})
                         for acks in ("all", "1")}
            waits: dict[str, list[float]] = {acks: [] for acks in producers}
            for i in range(samples + 50):  # the first 50 of each warm the connections and are dropped
                for acks, producer in producers.items():
                    start = time.monotonic()
                    producer.produce(REPLICATION_TOPIC, b"x" * 100, str(i).encode())
                    if producer.flush(10) != 0:
                        raise BrokerError(f"a produce with acks={acks} was not acknowledged within 10s")
                    if i >= 50:
                        waits[acks].append((time.monotonic() - start) * 1e6)
        finally:
            for future in admin.delete_topics([REPLICATION_TOPIC], operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result()
    acks_all, acks_one = (float(np.median(waits[a])) for a in ("all", "1"))
    addresses = [(b.host, b.port) for b in admin.list_topics(timeout=10).brokers.values()]
    remote = float(np.median([_handshake_us(address, 50) for address in addresses]))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        loopback = _handshake_us(listener.getsockname(), 50)
    details = {"brokers": brokers, "samples": samples, "acks_all_p50_us": round(acks_all, 1),
               "acks_1_p50_us": round(acks_one, 1), "handshake_us": round(remote, 1),
               "loopback_handshake_us": round(loopback, 1)}
    echo(f"replication: acks=all p50 {acks_all:.0f} us, acks=1 {acks_one:.0f} us; TCP handshake to the brokers "
         f"{remote:.0f} us, on loopback {loopback:.0f} us")
    return {"replication_us": round(max(0.0, acks_all - acks_one), 1),
            "network_rtt_us": round(max(0.0, remote - loopback), 1), "measured": details}


def _handshake_us(address: tuple[str, int], count: int) -> float:
    """Median time to open a TCP connection (one round trip: SYN, SYN-ACK) to ``address``."""
    times = []
    for _ in range(count):
        start = time.monotonic()
        try:
            with socket.create_connection(address, timeout=2):
                times.append((time.monotonic() - start) * 1e6)
        except OSError as err:
            raise BrokerError(f"cannot connect to broker {address[0]}:{address[1]} ({type(err).__name__})") from None
    return float(np.median(times))
