"""The simulated transport: partitions, producers that linger, consumer groups.

A message is ``(event, t_s)``: the decoded event and the simulated time it was
produced. Producers batch per topic-partition as librdkafka does with
``linger.ms``: the first message of a batch opens it, the batch leaves when the
linger expires or the process flushes (a service after every batch it handles),
and it reaches every subscribed group a *transport* delay later
(drawn once per batch from the calibrated distribution: request, append,
replication, fetch, poll wake-up). Each group hands a partition's messages to
the instance that owns it; while a group rebalances, or a partition's leader is
down, its messages wait.
"""
from __future__ import annotations

import bisect
import math
import zlib
from collections import deque
from functools import partial

import numpy as np
import simpy

from bench.sim.clock import Clock
from bench.sim.hosts import Host
from bench.sim.profile import Distribution, LoadPoint, endless

WINDOW_S = 0.1  # the message rate is measured over windows this long
SMOOTHING = 0.5  # weight of the newest window in the rate

RECENT = 10_000  # messages per topic the duplicate fault can re-deliver


def partition_of(key: str, partitions: int) -> int:
    """librdkafka's default ``consistent_random`` partitioner for a keyed message: CRC32 of the key."""
    return zlib.crc32(key.encode()) % partitions


class Transport:
    """Transport delays (seconds) at the message rate the brokers carry now.

    Calibration measured the transport distribution at a few levels of background
    traffic (:class:`bench.sim.profile.LoadPoint`); a draw at a rate between two levels
    comes from the lower or the upper one, in proportion to the distance, so the
    distribution (tail included) moves smoothly with the load. To each draw is added
    the receiving process's wake-up (``Profile.wakeup_us``).
    """

    def __init__(self, env: simpy.Environment, points: tuple[LoadPoint, ...], brokers: int,
                 rng: np.random.Generator, wakeup_us: Distribution | None = None,
                 broker_cores_line: tuple[float, ...] | None = None) -> None:
        self.env = env
        self.rates = [p.messages_per_s for p in points]
        cores = [p.broker_cores for p in points]
        line = broker_cores_line or (_line(self.rates, cores) if all(c is not None for c in cores) else None)
        # (at rest, per message/s, per request/s); a line fitted before requests were counted has two terms
        self._cpu_line = None if line is None else (tuple(line) + (0.0,))[:3]
        self.draws = [p.transport_us.draws_s(rng) for p in points]
        self.wakeups = wakeup_us.draws_s(rng) if wakeup_us is not None else None
        self.uniform = endless(lambda: rng.random(4096).tolist())
        self.exponential = endless(lambda: rng.standard_exponential(4096).tolist())
        self.brokers = brokers
        self.produced = 0
        # Kafka requests every client sent since the last window (produce requests, fetch responses
        # taken): a broker's CPU follows them as much as its messages, and batching makes them fewer
        # per message as the rate grows.
        self.requests = 0
        self.rate_per_s = 0.0  # per broker, smoothed
        self.requests_per_s = 0.0  # per broker, smoothed
        self.lower, self.weight = 0, 0.0
        env.process(self._update())

    def __next__(self) -> float:
        i = self.lower
        if self.weight and next(self.uniform) < self.weight:
            i += 1
        if self.wakeups is None:
            return next(self.draws[i])
        return next(self.draws[i]) + next(self.wakeups)

    def broker_cores(self) -> float | None:
        """Broker CPU at the current rate: the line fitted to real runs, else the least-squares line
        through the calibrated levels (never falling with the rate); None when neither is known."""
        if self._cpu_line is None:
            return None
        intercept, per_message, per_request = self._cpu_line
        return intercept + per_message * self.rate_per_s + per_request * self.requests_per_s

    def _update(self):
        while True:
            yield self.env.timeout(WINDOW_S)
            current = self.produced / WINDOW_S / self.brokers
            self.produced = 0
            self.rate_per_s = SMOOTHING * current + (1 - SMOOTHING) * self.rate_per_s
            self.requests_per_s = (SMOOTHING * self.requests / WINDOW_S / self.brokers
                                   + (1 - SMOOTHING) * self.requests_per_s)
            self.requests = 0
            i = bisect.bisect_right(self.rates, self.rate_per_s) - 1
            if i < 0:
                self.lower, self.weight = 0, 0.0
            elif i >= len(self.rates) - 1:
                self.lower, self.weight = len(self.rates) - 1, 0.0
            else:
                self.lower = i
                self.weight = (self.rate_per_s - self.rates[i]) / (self.rates[i + 1] - self.rates[i])


def _line(x: list[float], y: list[float]) -> tuple[float, float]:
    """(intercept, slope >= 0) of the least-squares line through the points."""
    if len(x) < 2:
        return float(y[0]), 0.0
    slope, intercept = np.polyfit(x, y, 1)
    if slope < 0:
        return float(np.mean(y)), 0.0
    return float(intercept), float(slope)


def _hand_over(groups: list, topic: str, partition: int, msgs: list) -> None:
    """A batch replicated: to each group's owner of the partition (a module function: the partial
    made per batch calls it without a staticmethod lookup)."""
    for group in groups:  # Group.deliver inlined: once per batch and group
        owner = group.owner[partition]
        if owner is None:
            group.held.setdefault((topic, partition), []).extend(msgs)
        else:
            owner.receive(topic, partition, msgs)


class Cluster:
    """Brokers, the partitions they lead, and which groups read each topic.

    ``replication_s`` is added before consumers see a batch when topics are
    replicated (the high watermark waits for the followers).
    """

    def __init__(self, env: Clock, partitions: int, brokers: list[Host], transport: Transport,
                 replication_s: float = 0.0) -> None:
        self.env = env
        self.partitions = partitions
        self.brokers = brokers
        self.transport = transport
        self.replication_s = replication_s
        self.subscribers: dict[str, list[Group]] = {}
        # Topics kept whole, per partition, because a role rebuilds its state from them after a
        # crash or rebalance (Pattern.restore_from); only when the workload has such faults.
        self.logged: frozenset[str] = frozenset()
        self.logs: dict[tuple[str, int], list[dict]] = {}
        self.messages: dict[str, int] = {}  # topic -> messages produced
        self.down_until: dict[int, float] = {}  # broker index -> when its partitions are led again
        self.recent: dict[str, deque] | None = None  # topic -> last (partition, message), for the duplicate fault
        env.process(self._broker_cpu())

    def _broker_cpu(self):
        while True:
            yield self.env.timeout(WINDOW_S)
            cores = self.transport.broker_cores()
            if cores is not None:
                for broker in self.brokers:
                    broker.charge("broker", cores * WINDOW_S)

    def subscribe(self, group: Group) -> None:
        for topic in group.topics:
            self.subscribers.setdefault(topic, []).append(group)

    def leader(self, partition: int) -> int:
        return partition % len(self.brokers)

    def arrive(self, topic: str, partition: int, msgs: list) -> None:
        """A produced batch reaches its leader: consumers see it after replication."""
        self.transport.produced += len(msgs)
        self.messages[topic] = self.messages.get(topic, 0) + len(msgs)
        groups = self.subscribers.get(topic)
        if not groups:
            return
        if self.recent is not None:
            self.recent.setdefault(topic, deque(maxlen=RECENT)).extend((partition, m) for m in msgs)
        delay = self.replication_s
        if self.down_until:  # a leader's outage, only in runs with a broker fault
            delay += max(self.down_until.get(self.leader(partition), 0.0) - self.env.now, 0.0)
        if delay > 0:
            self.env.call_in(delay, partial(_hand_over, groups, topic, partition, msgs))
        else:
            _hand_over(groups, topic, partition, msgs)


class _Batch:
    """One partition's batch in a producer; called by the clock when it reaches the leader (once: a
    lingering batch that a flush sent early is also called when its linger would have ended)."""

    __slots__ = ("cluster", "topic", "partition", "msgs", "close_s", "sent", "requested")

    def __init__(self, cluster: Cluster, topic: str, partition: int, close_s: float) -> None:
        self.cluster, self.topic, self.partition, self.close_s = cluster, topic, partition, close_s
        self.msgs: list = []
        self.sent = False
        self.requested = False  # its produce request counted (a flush that sends it early schedules it again)

    def __call__(self) -> None:
        if not self.sent:
            self.sent = True
            self.cluster.arrive(self.topic, self.partition, self.msgs)


class Producer:
    """One process's producer: a batch per topic-partition, sent ``linger_s`` after it opened or
    when the process flushes, whichever is first; its transport (and its wait for cores on a busy
    host) is drawn once for the whole batch.

    ``flushed``: the process flushes after every batch it handles (the service runtime), so a batch
    is scheduled only when that flush comes, or when a later message finds its linger run out
    (handling that outlasts the linger, a processing time's sleeps, sends it then as librdkafka
    does): no event per batch opened."""

    def __init__(self, env: Clock, cluster: Cluster, host: Host, linger_s: float,
                 extra_s: float = 0.0, owner: str = "", request_cpu_s: float = 0.0, flushed: bool = False) -> None:
        self.env = env
        self.cluster = cluster
        self.host = host
        self.linger_s = linger_s
        self.flushed = flushed
        self.extra_s = extra_s  # network between this process's host and the brokers
        self.open: dict[tuple[str, int], _Batch] = {}
        self.owner, self.request_cpu_s = owner, request_cpu_s  # CPU charged to the owner per request sent
        self.requests = 0  # produce requests sent (one per partition batch)

    def send(self, topic: str, partition: int, msg: tuple, t_s: float) -> None:
        """Queue ``msg`` at time ``t_s`` (>= now: a batch computes its messages' times ahead)."""
        key = (topic, partition)
        batch = self.open.get(key)
        if batch is None or t_s >= batch.close_s:
            if batch is not None and self.flushed:
                self._schedule(batch)  # its linger ran out before this message: it left then
            batch = self.open[key] = _Batch(self.cluster, topic, partition, t_s + self.linger_s)
            if not self.flushed and self.linger_s != math.inf:
                self._schedule(batch)
        batch.msgs.append(msg)

    def flush(self, t_s: float) -> None:
        """Send every open batch at ``t_s`` (or when its linger ran out, if that was earlier)."""
        for batch in self.open.values():
            if batch.close_s > t_s:
                batch.close_s = t_s
                self._schedule(batch)
            elif self.flushed:
                self._schedule(batch)
        self.open.clear()

    def _schedule(self, batch: _Batch) -> None:
        if not batch.requested:
            batch.requested = True
            self.requests += 1
            self.cluster.transport.requests += 1
            if self.request_cpu_s:
                self.host.charge(self.owner, self.request_cpu_s)
        delay = batch.close_s - self.env.now + next(self.cluster.transport) + self.extra_s
        if self.host.wait_s:
            delay += self.host.wait_s * next(self.cluster.transport.exponential)
        delay += self.host.backlog_s
        self.env.call_in(delay, batch)


class Group:
    """A consumer group: its members, which partitions each owns (range assignment), and
    messages waiting for an owner while it rebalances."""

    def __init__(self, env: simpy.Environment, name: str, topics: tuple[str, ...], partitions: int) -> None:
        self.env = env
        self.name = name
        self.topics = topics
        self.partitions = partitions
        self.members: list = []  # live instances, in member order
        self.owner: list = [None] * partitions
        self.held: dict[tuple[str, int], list] = {}
        self.rebalancing_until = 0.0

    def deliver(self, topic: str, partition: int, msgs: list) -> None:
        owner = self.owner[partition]
        if owner is None:
            self.held.setdefault((topic, partition), []).extend(msgs)
        else:
            owner.receive(topic, partition, msgs)

    def assign(self) -> None:
        """Range assignment: every topic has the same partition count, so each member owns the
        same partition numbers of every topic it reads (co-partitioned, as the patterns need)."""
        self.owner = [None] * self.partitions
        n = len(self.members)
        if n:
            per, extra = divmod(self.partitions, n)
            p = 0
            for i, member in enumerate(self.members):
                for _ in range(per + (1 if i < extra else 0)):
                    self.owner[p] = member
                    p += 1
        for member in self.members:
            member.assigned({p for p, o in enumerate(self.owner) if o is member})
        held, self.held = self.held, {}
        for (topic, partition), msgs in held.items():
            self.deliver(topic, partition, msgs)

    def rebalance(self, pause_s: float, leaving=None, joining=None) -> None:
        """An eager rebalance: every member gives its partitions back (their fetched, unprocessed
        messages return to the group), nothing is consumed for ``pause_s``, then partitions are
        assigned over the members again."""
        for member in self.members:
            for topic, partition, msgs in member.revoke():
                self.held.setdefault((topic, partition), []).extend(msgs)
        if leaving is not None and leaving in self.members:
            self.members.remove(leaving)
        self.owner = [None] * self.partitions
        self.rebalancing_until = max(self.rebalancing_until, self.env.now + pause_s)

        def done(_event) -> None:
            if joining is not None and joining not in self.members and joining.alive:
                self.members.append(joining)
            if self.env.now >= self.rebalancing_until:
                self.assign()

        self.env.timeout(pause_s).callbacks.append(done)

    def backlog(self) -> int:
        return sum(len(m) for m in self.held.values()) + sum(member.backlog() for member in self.members)
