"""Timed faults from the workload's ``faults:`` list, executed during a run (like Trogdor's fault specs).

Each fault type is a small function in :data:`FAULTS`: it does the damage and
returns what undoes it (or None), which the injector runs ``duration`` later.
Times count from the start of load, warm-up included.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.flow import events as ev
from bench.broker import embedded
from bench.kafka.errors import BrokerError
from bench.run.supervisor import Supervisor
from bench.flow.workload import Fault

DEFAULT_POISON = 10
DEFAULT_DUPLICATES = 100
SLOW_ON, SLOW_OFF = signal.SIGUSR1, signal.SIGUSR2  # `bench serve` adds / removes its slow-fault delay


@dataclass
class FaultContext:
    supervisor: Supervisor
    bootstrap_servers: str
    client_conf: dict
    cluster: embedded.Cluster | None
    roles: tuple[str, ...]
    placed_brokers: Any = None  # remote.PlacedBrokers: nodes the run started on other hosts


@dataclass
class FaultRecord:
    """What happened, in seconds from the start of load."""

    type: str
    target: str
    at_s: float
    end_s: float | None = None
    detail: dict = field(default_factory=dict)
    error: str | None = None


def _instance(ctx: FaultContext, fault: Fault) -> str:
    role = fault.role
    if role not in ctx.roles:
        raise BrokerError(f"fault {fault.type}: role {role} is not part of this pattern ({', '.join(ctx.roles)})")
    return f"{role}-{fault.instance or 0}"


def kill(ctx: FaultContext, fault: Fault, record: FaultRecord) -> Callable[[], None]:
    name = record.target = _instance(ctx, fault)
    ctx.supervisor.kill(name)
    return lambda: ctx.supervisor.restart(name)


def pause(ctx: FaultContext, fault: Fault, record: FaultRecord) -> Callable[[], None]:
    name = record.target = _instance(ctx, fault)
    ctx.supervisor.signal(name, signal.SIGSTOP)
    return lambda: ctx.supervisor.signal(name, signal.SIGCONT)


def slow(ctx: FaultContext, fault: Fault, record: FaultRecord) -> Callable[[], None]:
    role = fault.role
    names = [n for n, inst in ctx.supervisor.instances.items() if inst.role == role
             and (fault.instance is None or inst.index == fault.instance)]
    record.target = ",".join(names)
    record.detail["delay_ms"] = (fault.delay_s or 0.0) * 1000
    for name in names:
        ctx.supervisor.signal(name, SLOW_ON)
    return lambda: [ctx.supervisor.signal(name, SLOW_OFF) for name in names]


def _leader_of(ctx: FaultContext, topic: str) -> int:
    md = AdminClient({"bootstrap.servers": ctx.bootstrap_servers}).list_topics(topic, timeout=10)
    return md.topics[topic].partitions[0].leader


def broker_kill(ctx: FaultContext, fault: Fault, record: FaultRecord) -> Callable[[], None]:
    topic = fault.topic or ev.ORDER_CREATED
    if ctx.placed_brokers is not None and len(ctx.placed_brokers.nodes) >= 3:  # on their hosts, through the agents
        node_id = fault.instance if fault.instance is not None else _leader_of(ctx, topic)
        record.target = f"broker {node_id}"
        record.detail["leader_of"] = f"{topic}/0" if fault.instance is None else None
        ctx.placed_brokers.kill(node_id)
        return lambda: ctx.placed_brokers.restart(node_id)
    if ctx.cluster is None or len(ctx.cluster.nodes) < 3:
        raise BrokerError("broker-kill needs the embedded 3-node cluster (`bench broker start --nodes 3`) or three "
                          "nodes placed by the hosts file")
    node_id = fault.instance if fault.instance is not None else _leader_of(ctx, topic)
    node = ctx.cluster.node(node_id)
    record.target = f"broker {node_id}"
    record.detail["leader_of"] = f"{topic}/0" if fault.instance is None else None
    embedded.kill_node(node, signal.SIGKILL)
    try:
        os.waitpid(node.pid, 0)
    except ChildProcessError:
        pass  # started by another process (`bench broker start`): not ours to reap
    return lambda: embedded.restart_node(ctx.cluster, node_id)


def poison(ctx: FaultContext, fault: Fault, record: FaultRecord) -> None:
    topic = record.target = fault.topic or ev.ORDER_CREATED
    count = fault.count or DEFAULT_POISON
    producer = Producer({**ctx.client_conf, "bootstrap.servers": ctx.bootstrap_servers})
    for i in range(count):
        producer.produce(topic, b"\x00\xffpoison: not an order event " + str(i).encode(), f"{ev.POISON_KEY_PREFIX}{i}")
    producer.flush(30)
    record.detail["messages"] = count
    return None


def duplicate(ctx: FaultContext, fault: Fault, record: FaultRecord) -> None:
    """Re-deliver the most recent messages of a topic, as a producer retry storm or a replay would."""
    topic = record.target = fault.topic or ev.ORDER_CREATED
    wanted = fault.count or DEFAULT_DUPLICATES
    consumer = Consumer({**ctx.client_conf, "bootstrap.servers": ctx.bootstrap_servers,
                         "group.id": "bench-fault-duplicate", "enable.auto.commit": False})
    producer = Producer({**ctx.client_conf, "bootstrap.servers": ctx.bootstrap_servers})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        per_partition = max(1, wanted // len(partitions))
        assignment = []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            assignment.append(TopicPartition(topic, p, max(low, high - per_partition)))
        consumer.assign(assignment)
        sent, deadline = 0, time.monotonic() + 10
        while sent < wanted and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if msg.error() is None and sent < wanted:
                    producer.produce(topic, msg.value(), msg.key())
                    sent += 1
        producer.flush(30)
        record.detail["messages"] = sent
    finally:
        consumer.close()
    return None


FAULTS: dict[str, Callable[[FaultContext, Fault, FaultRecord], Callable[[], None] | None]] = {
    "kill": kill,
    "pause": pause,
    "slow": slow,
    "broker-kill": broker_kill,
    "poison": poison,
    "duplicate": duplicate,
}


class FaultInjector(threading.Thread):
    """Runs the workload's faults on schedule; each record says what was done and when."""

    def __init__(self, faults: tuple[Fault, ...], ctx: FaultContext, start_mono: float,
                 echo: Callable[[str], None]) -> None:
        super().__init__(name="faults", daemon=True)
        self.ctx, self.start_mono, self.echo = ctx, start_mono, echo
        # (when, sequence, action): fault starts and the undo of each, in time order.
        self.plan: list[tuple[float, int, Callable[[], None]]] = []
        self.records: list[FaultRecord] = []
        self.stopping = threading.Event()
        for i, fault in enumerate(sorted(faults, key=lambda f: f.at_s)):
            self.plan.append((fault.at_s, i, lambda f=fault: self._start(f)))

    def _now(self) -> float:
        return time.monotonic() - self.start_mono

    def _start(self, fault: Fault) -> None:
        record = FaultRecord(fault.type, "", round(self._now(), 3))
        self.records.append(record)
        try:
            undo = FAULTS[fault.type](self.ctx, fault, record)
        except Exception as exc:  # noqa: BLE001 - a fault that cannot be injected is reported, the run goes on
            record.error = str(exc).splitlines()[0]
            self.echo(f"fault {fault.type} at {record.at_s:.1f}s failed: {record.error}")
            return
        self.echo(f"fault {fault.type} on {record.target} at {record.at_s:.1f}s")
        if undo is None:
            record.end_s = record.at_s
            return

        def finish() -> None:
            try:
                undo()
            except Exception as exc:  # noqa: BLE001
                record.error = f"undo failed: {str(exc).splitlines()[0]}"
            record.end_s = round(self._now(), 3)
            self.echo(f"fault {fault.type} on {record.target} ended at {record.end_s:.1f}s")

        self.plan.append((record.at_s + (fault.duration_s or 0.0), len(self.plan), finish))
        self.plan.sort(key=lambda item: (item[0], item[1]))

    def run(self) -> None:
        self.plan.sort(key=lambda item: (item[0], item[1]))
        while self.plan and not self.stopping.is_set():
            when, _, action = self.plan[0]
            if self.stopping.wait(max(0.0, when - self._now())):
                break
            self.plan.pop(0)
            action()

    def finish(self) -> None:
        """Undo whatever is still in effect (the run ended early), then stop."""
        self.stopping.set()
        if self.ident is not None:
            self.join(30)
        for _, _, action in [p for p in self.plan if p[2].__name__ == "finish"]:
            action()
        self.plan.clear()
