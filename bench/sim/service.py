"""One simulated service instance: the real pattern handler behind a simulated outbox.

This is the seam: :class:`bench.patterns.base.Handler` is driven by the real
runtime with a Kafka outbox and here with :class:`SimOutbox`, so the flow logic
(business decisions, compensations, saga state, timeouts) is the same code.

An instance works as the runtime's loop does: when idle it wakes on the first
fetched message, takes what is already fetched (up to ``BATCH_MAX``) and
handles it one message at a time. Each message costs main-thread time
(``in`` per consumed and ``out`` per produced message, as calibrated, plus the
workload's processing time); each output is produced at the
moment its input's handling reaches it, so batching shows up in latency.
"""
from __future__ import annotations

import dataclasses
from array import array
from collections import deque
from collections.abc import Iterator

from bench.flow import events as ev
from bench.patterns.base import Handler, SpanFinder
from bench.run.runtime import BATCH_MAX, COMMIT_INTERVAL_MS, POLL_S
from bench.sim.clock import Clock
from bench.sim.hosts import Host
from bench.sim.kafka import Cluster, Producer, partition_of

COMMIT_INTERVAL_S = COMMIT_INTERVAL_MS / 1000
WAKE_IDLE_S = 0.001  # idle this long or longer: a wake-up costs the calibrated ``batch`` time in full

class StepSamples:
    """Per step: when it ended and how long it took, in seconds of simulated time."""

    def __init__(self) -> None:
        self.ends: dict[str, array] = {}
        self.latencies: dict[str, array] = {}
        self._appends: dict[str, tuple] = {}  # step -> the append methods of its two arrays (one lookup per add)

    def add(self, step: str, end_s: float, latency_s: float) -> None:
        appends = self._appends.get(step)
        if appends is None:
            ends, latencies = self.ends[step], self.latencies[step] = array("d"), array("d")
            appends = self._appends[step] = (ends.append, latencies.append)
        appends[0](end_s)
        appends[1](latency_s)


@dataclasses.dataclass(frozen=True)
class Costs:
    """Seconds of main-thread time (``*_s``) and of process CPU (``cpu_*_s``) per message or batch."""

    in_s: float
    out_s: float
    batch_s: float
    cpu_in_s: float
    cpu_out_s: float
    cpu_batch_s: float
    processing_s: float = 0.0  # the workload's per-message processing (a sleep: time, not CPU)
    # Process CPU per Kafka request: a fetch response taken in here, a produce request sent by the
    # instance's producer (librdkafka's threads waking, the syscalls): per request, not per message,
    # so the cost per message falls as batches grow with the rate.
    cpu_request_s: float = 0.0
    # Process CPU per second whatever it handles (the poll loop waking every poll timeout,
    # librdkafka's timers and heartbeats): what an instance costs at rest, charged by the World.
    cpu_idle_cores: float = 0.0
    # Time per message drawn from a distribution (seconds), on top of the fixed times: the
    # workload's processing when it is a distribution; exponential draws with ``in_s`` zero
    # make an instance an M/M/1 server, whose answer is known.
    in_draws: Iterator[float] | None = None


class SimOutbox:
    """:class:`bench.patterns.base.Outbox` for the model: stamps each output with the time the
    handler's work reaches it and gives it to the instance's producer. ``samples`` (topic ->
    first events) lets the run estimate message sizes afterwards."""

    SAMPLES_PER_TOPIC = 200

    def __init__(self, step_of: SpanFinder | None, cluster: Cluster, producer: Producer, steps: StepSamples,
                 samples: dict[str, list] | None = None) -> None:
        self.step_of = step_of  # None: a reader that produces nothing measured
        self.cluster = cluster
        self.send = producer.send
        self.open = producer.open  # its open batches (the same dict for its life: flush clears it)
        self.flush = producer.flush
        self.steps = steps
        self.step_appends: dict[str, tuple] = {}  # step -> steps' append methods for it
        self.samples = samples if samples is not None else {}
        self.sampled: set[str] = set()  # topics whose samples are complete (checked per message)
        self.t = 0.0  # simulated time of the handler's work
        self.cost_out = 0.0
        self.source: dict | None = None  # the message being handled, None in tick/restore
        self.source_t = 0.0
        self.partition = 0
        self.emitted = 0

    def emit(self, topic: str, event: dict) -> None:
        t = self.t = self.t + self.cost_out
        self.emitted += 1
        source = self.source
        order_id = event["orderId"]
        if source is None:
            partition = partition_of(order_id, self.cluster.partitions)
        else:
            # Same key, same partition count: same partition.
            partition = self.partition if order_id == source["orderId"] else partition_of(order_id,
                                                                                          self.cluster.partitions)
            if self.step_of is not None:
                step = self.step_of(topic, event, source)
                if step is not None:
                    # StepSamples.add inlined (a call per message): its append methods, looked up once
                    appends = self.step_appends.get(step)
                    if appends is None:
                        self.steps.add(step, t, t - self.source_t)
                        appends = self.step_appends[step] = self.steps._appends[step]
                    else:
                        appends[0](t)
                        appends[1](t - self.source_t)
        if topic not in self.sampled:
            kept = self.samples.setdefault(topic, [])
            if len(kept) < self.SAMPLES_PER_TOPIC:
                kept.append(event)
            else:
                self.sampled.add(topic)
        if topic in self.cluster.logged:
            self.cluster.logs.setdefault((topic, partition), []).append(event)
        # Producer.send's common case inlined: a batch already open for the partition takes it.
        batch = self.open.get((topic, partition))
        if batch is not None and t < batch.close_s:
            batch.msgs.append((event, t))
        else:
            self.send(topic, partition, (event, t), t)


class Instance:
    """One process of one role, consuming the partitions its group assigns it."""

    def __init__(self, env: Clock, role: str, index: int, handler: Handler, outbox: SimOutbox,
                 host: Host, costs: Costs, ticks: bool = False, replays: bool = False,
                 restore_from: tuple[str, ...] = (), fetch_rtt_s: float = 0.0) -> None:
        self.env = env
        self.role = role
        self.index = index
        self.handler = handler
        self.outbox = outbox
        self.transport = outbox.cluster.transport  # counts the fetch responses it takes, for the brokers' CPU
        self.host = host
        self.costs = costs
        self.queue: deque[list] = deque()  # [topic, partition, msgs, next index]
        self.queued = 0
        self.busy = False
        # Busy until this time with no _run scheduled (None: a _run is scheduled or running, or it
        # is idle). A batch handled, the instance is busy until its end; most often nothing
        # arrives meanwhile and the _run that would wake then only finds the queue empty, so that
        # _run is scheduled only once something arrives before the end (it runs at the same time),
        # and otherwise the instance counts as idle from the end on (see _wake).
        self.busy_until: float | None = None
        self.alive = True
        self.stalled_until = 0.0
        self.idle_since = 0.0
        self.fetch_rtt_s = fetch_rtt_s
        self.next_fetch_s = 0.0
        self.in_next_fetch: list[tuple[str, int, list]] = []
        self.slow_s = 0.0  # extra processing per message while a `slow` fault lasts
        self.owned: set[int] = set()
        self.processed = 0
        self.fetches = 0  # fetch responses that brought it messages
        self.ticks = ticks
        # At-least-once: what was handled since the last offset commit is replayed after a crash.
        self.replays = replays
        self.uncommitted: list[tuple[str, int, list]] = []
        self.committed_at = 0.0
        self.restore_from = restore_from
        if ticks:
            env.process(self._ticker())

    # --- the group's side ---------------------------------------------------

    def receive(self, topic: str, partition: int, msgs: list) -> None:
        """Data for this member reached the broker. A fetch request waiting there takes it at once;
        otherwise it goes with the next fetch response, one fetch round trip after the last, with
        whatever else arrived meanwhile (so a busy consumer wakes per response, not per batch)."""
        now = self.env._now
        if not self.fetch_rtt_s or now >= self.next_fetch_s:
            # _fetch_cost and _fetched inlined: this runs once per batch delivered
            self.next_fetch_s = now + self.fetch_rtt_s + self.host.backlog_s
            self.fetches += 1
            self.transport.requests += 1
            if self.costs.cpu_request_s:
                self.host.charge(self.role, self.costs.cpu_request_s)
            self.queue.append([topic, partition, msgs, 0])
            self.queued += len(msgs)
            if not self.busy or self.busy_until is not None:
                self._wake()
            return
        if not self.in_next_fetch:
            self.env.call_in(self.next_fetch_s - now, self._fetch_response)
        self.in_next_fetch.append((topic, partition, msgs))

    def _fetch_cost(self) -> None:
        self.fetches += 1
        self.transport.requests += 1
        if self.costs.cpu_request_s:
            self.host.charge(self.role, self.costs.cpu_request_s)

    def _fetch_response(self) -> None:
        self.next_fetch_s = self.env.now + self.fetch_rtt_s + self.host.backlog_s
        self._fetch_cost()
        waiting, self.in_next_fetch = self.in_next_fetch, []
        for topic, partition, msgs in waiting:
            self._fetched(topic, partition, msgs)

    def _fetched(self, topic: str, partition: int, msgs: list) -> None:
        self.queue.append([topic, partition, msgs, 0])
        self.queued += len(msgs)
        if not self.busy or self.busy_until is not None:
            self._wake()

    def _settle(self) -> None:
        """Busy until a time now past, with nothing scheduled: idle since then, as the _run
        scheduled for that time would have found it (nothing had arrived)."""
        until = self.busy_until
        if until is not None and self.env._now >= until:
            self.busy_until = None
            self.busy, self.idle_since = False, until

    def _wake(self) -> None:
        """Something was queued: handle it now if idle, or at the end of the batch in hand."""
        self._settle()
        until = self.busy_until
        if until is not None:
            self.busy_until = None
            self.env.call_in(until - self.env._now, self._run)
        elif not self.busy and self.alive:
            self.busy = True
            self._run(woken=True)

    def assigned(self, partitions: set[int]) -> None:
        """Take partitions. As the runtime does on every assignment, a role that keeps state in
        Kafka reads its own past output on them back first, which takes its time."""
        self.owned = set(partitions)
        cluster = self.outbox.cluster
        if not self.restore_from or not partitions:
            return
        records = [(topic, event) for topic in self.restore_from if topic in cluster.logged
                   for p in sorted(partitions) for event in cluster.logs.get((topic, p), ())]
        start = max(self.env.now, self.stalled_until)
        self.outbox.source, self.outbox.t = None, start + len(records) * self.costs.in_s
        self.outbox.cost_out = self.costs.out_s
        self.handler.restore(records, self.outbox)
        self.outbox.flush(self.outbox.t)
        self.stalled_until = self.outbox.t

    def revoke(self) -> list[tuple[str, int, list]]:
        """Give back every fetched, unhandled message (and forget work on the partitions)."""
        back = [(topic, partition, msgs[i:]) for topic, partition, msgs, i in self.queue if i < len(msgs)]
        back += self.in_next_fetch
        self.queue.clear()
        self.in_next_fetch = []
        self.queued = 0
        if self.owned:
            self.handler.revoke(set(self.owned))
        self.owned = set()
        return back

    def crash(self) -> list[tuple[str, int, list]]:
        """SIGKILL: the process is gone; what it had not committed is consumed again by the next owner."""
        self.alive = False
        back = self.uncommitted + self.revoke()
        self.uncommitted = []
        return back

    def backlog(self) -> int:
        return self.queued + sum(len(msgs) for _, _, msgs in self.in_next_fetch)

    # --- the consume-handle-produce loop ------------------------------------

    def _run(self, woken: bool = False) -> None:
        """Handle a batch; ``woken``: from idle, not continuing after a batch or a stall."""
        env = self.env
        now = env._now
        if not self.alive or not self.queue:
            self.busy, self.idle_since = False, now
            return
        if self.stalled_until > now:
            env.call_in(self.stalled_until - now, self._run)
            return
        costs, outbox, handle = self.costs, self.outbox, self.handler.handle
        cost_in = costs.in_s + costs.processing_s + self.slow_s
        draws = costs.in_draws
        outbox.cost_out = costs.out_s
        emitted_before = outbox.emitted
        # Waking costs (a blocked poll returning, cold caches), the more the longer the sleep;
        # going straight on with the next batch does not.
        wake = min(1.0, (now - self.idle_since) / WAKE_IDLE_S) if woken else 0.0
        t = now + costs.batch_s * wake
        taken = 0
        queue = self.queue
        while queue and taken < BATCH_MAX:
            chunk = queue[0]
            topic, partition, msgs, first = chunk
            end = min(len(msgs), first + BATCH_MAX - taken)
            outbox.partition = partition
            for k in range(first, end):
                event, produced_t = msgs[k]
                t += cost_in if draws is None else next(draws) + cost_in
                if event is None:  # undecodable: to the dead-letter topic, the flow goes on
                    outbox.source, outbox.t = None, t
                    outbox.emit(ev.DEAD_LETTER, {"orderId": f"poison-{k}"})
                    t = outbox.t
                    continue
                outbox.source, outbox.source_t, outbox.t = event, produced_t, t
                handle(topic, partition, event, outbox)
                t = outbox.t
            if self.replays:
                self.uncommitted.append((topic, partition, msgs[first:end]))
            taken += end - first
            if end == len(msgs):
                queue.popleft()
            else:
                chunk[3] = end
        self.queued -= taken
        self.processed += taken
        outbox.source, outbox.t = None, t
        self.handler.tick(t, outbox)
        t = outbox.t
        emitted = outbox.emitted - emitted_before
        self.host.charge(self.role, taken * costs.cpu_in_s + emitted * costs.cpu_out_s + costs.cpu_batch_s * wake)
        if self.replays and t - self.committed_at >= COMMIT_INTERVAL_S:
            self.uncommitted, self.committed_at = [], t
        if emitted:
            # The runtime flushes after each batch and waits for the acknowledgements (taken as
            # one transport delay) before it takes the next: what arrives meanwhile is that batch.
            outbox.flush(t)
            t += next(outbox.cluster.transport) + self.host.backlog_s
        if queue:
            env.call_in(t - now, self._run)
        else:
            self.busy_until = t  # a _run at t only if something arrives before (_wake)

    def _ticker(self):
        """The runtime ticks the handler between batches and at least every poll timeout."""
        while True:
            yield self.env.timeout(POLL_S)
            self._settle()
            if self.alive and not self.busy and self.stalled_until <= self.env.now:
                self.outbox.source, self.outbox.t = None, self.env.now
                self.outbox.cost_out = self.costs.out_s
                self.handler.tick(self.env.now, self.outbox)
                self.outbox.flush(self.outbox.t)
