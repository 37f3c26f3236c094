"""The service runtime both patterns share: one consume-process-produce loop.

Per wake-up: wait for the first message, take whatever else is already
fetched (up to ``BATCH_MAX``), run the pattern's handler on each (plus the
workload's processing time), produce the outputs and flush them. Flushing
sends them at once, one request per partition, instead of after ``linger.ms``,
and waits for their acknowledgements; the next batch is whatever arrived
meanwhile. So the batch size follows the load: one message at a time and no
linger wait at low rates, large batches and few requests at high rates. On
these machines a request, and the wake-ups it causes, costs far more than the
work on a message, so this decides what the harness costs per order.

At-least-once: a batch's input offsets are stored only once every output it
caused is acknowledged by the broker (delivery callbacks, in batch order), and
librdkafka commits stored offsets in the background. So a crash replays input
whose effects may not have reached Kafka, never skips it, and no round trip
sits on the per-message path.

Exactly-once: outputs and input offsets go into one Kafka transaction,
committed every ``TX_INTERVAL_S`` (as Kafka Streams' commit.interval.ms does
for exactly-once), since a transaction per batch would cost a round trip each.

Undecodable messages go to the dead-letter topic and the flow continues.

A process stopped (SIGSTOP, a VM pause) for longer than its session timeout
has lost its partitions to another instance, which rebuilt its ledger from
Kafka meanwhile; but on waking it still holds messages fetched before, and
would handle them before librdkafka tells it of the rebalance, applying their
effects a second time. So a loop that finds such a gap hands back what it
holds unhandled, rejoins the group and restores its state like a new owner.
(Outputs already queued in the producer when it stopped still go out late:
only ``delivery: exactly-once`` fences such a zombie.)
"""
from __future__ import annotations

import gc
import json
import math
import os
import signal
import sys
import threading
from collections import deque
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from bench.run import heap
from bench.kafka import clients, kafkastats
from bench.flow import events as ev
from bench.patterns.base import Handler, Pattern
from bench.flow.workload import Workload

BATCH_MAX = 500
POLL_S = 0.05
FLUSH_TIMEOUT_S = 1.0
COMMIT_INTERVAL_MS = clients.COMMIT_INTERVAL_MS
TX_INTERVAL_S = 0.1
RESTORE_TIMEOUT_S = 120.0
STATS_PREFIX = "STATS "
# A supervised instance's stdout: READY once, then its backlog (kafkastats.backlog) each second.
BACKLOG_PREFIX = "BACKLOG "
# What a service reports when it stops; the supervisor sums each over a role's instances.
STATS_KEYS = ("processed", "dead_letters", "absorbed", "rejoins", *kafkastats.COUNTS)


@dataclass(frozen=True)
class ServiceSpec:
    pattern: Pattern
    role: str
    instance: int
    bootstrap_servers: str
    workload: Workload
    group_prefix: str = "bench"
    client_extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def group_id(self) -> str:
        return f"{self.group_prefix}-{self.pattern.name}-{self.role}"

    @property
    def client_id(self) -> str:
        return f"{self.pattern.name}-{self.role}-{self.instance}"


class OutputNotDelivered(RuntimeError):
    """An output of a handled batch failed delivery: the process must stop before storing its offsets."""


class _Batch:
    """Input offsets to store once all ``pending`` outputs of the batch are acknowledged."""

    __slots__ = ("offsets", "pending", "failed", "callback")

    def __init__(self) -> None:
        self.offsets: dict[tuple[str, int], int] = {}
        self.pending = 0
        self.failed = False
        self.callback = self.delivered  # one bound method per batch, not one per output

    def delivered(self, err, msg) -> None:
        self.pending -= 1
        if err is not None:
            self.failed = True


class _Outbox:
    def __init__(self, producer: Producer, on_wait=lambda: None) -> None:
        self.producer = producer
        self.batch: _Batch | None = None
        self.on_wait = on_wait  # called while blocked on a full producer queue: alive, not stalled

    def emit(self, topic: str, event: dict) -> None:
        event["ts_us"] = ev.now_us()
        self.send(topic, ev.encode(event), event["orderId"])

    def send(self, topic: str, value: bytes, key, headers=None) -> None:
        batch = self.batch
        callback = batch.callback if batch is not None else None
        while True:
            try:
                self.producer.produce(topic, value, key, headers=headers, on_delivery=callback)
                break
            except BufferError:
                self.producer.poll(0.01)  # local queue full: let deliveries drain
                self.on_wait()
        if batch is not None:
            batch.pending += 1


class Service:
    """One instance of one role: consume, handle, produce, commit."""

    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        self.topology = spec.pattern.topology(spec.workload.saga)
        self.handler: Handler = self.topology.handler(spec.role, spec.workload)
        self.processing = spec.workload.processing_of(spec.role)
        self.draw_processing_s = self.processing.sampler((spec.workload.seed, spec.role, spec.instance))
        # `slow` faults of this role, in workload order: SIGUSR1 starts the next one, SIGUSR2 ends it.
        self.slow_delays = [f.delay_s or 0.0 for f in sorted(spec.workload.faults, key=lambda f: f.at_s)
                            if f.type == "slow" and f.role == spec.role]
        self.slow_next = 0
        self.extra_s = 0.0
        self.processed = 0
        self.transactional = spec.workload.delivery == "exactly-once"
        extra = {**spec.client_extra, "client.id": spec.client_id}
        tx_id = f"{spec.group_id}-{spec.instance}" if self.transactional else None
        self.batching = kafkastats.Batching()
        self.producer = Producer({**clients.producer_config(spec.bootstrap_servers, spec.workload, extra, tx_id),
                                  **self.batching.conf("producer")})
        consumer_conf = clients.consumer_config(spec.bootstrap_servers, spec.workload, spec.group_id, extra,
                                                store_acknowledged=not self.transactional)
        self.consumer = Consumer({**consumer_conf, **self.batching.conf("consumer")})
        self.outbox = _Outbox(self.producer, on_wait=self._alive)
        self.running = True
        self.ready = False
        self.dead_letters = 0
        self._pending_restore: list[TopicPartition] = []
        self.unacked: deque[_Batch] = deque()
        self.owned: set[tuple[str, int]] = set()
        # Transactions fence a zombie themselves (and commit consumed positions, so handing
        # messages back mid-transaction would skip them): the stall guard is for at-least-once.
        self.stall_s = math.inf if self.transactional else int(consumer_conf["session.timeout.ms"]) / 1000
        self.rejoins = 0
        self.alive_at = time.monotonic()
        self.in_transaction = False
        self.tx_started = 0.0
        self.report_backlog: Callable[[int | None], None] | None = None
        self.trim = heap.Trim()  # a backlog's fetched batches must not pin memory for the rest of a soak

    def _alive(self) -> None:
        self.alive_at = time.monotonic()

    def stop(self, *_: object) -> None:
        self.running = False

    def slow_on(self, *_: object) -> None:
        if self.slow_next < len(self.slow_delays):
            self.extra_s = self.slow_delays[self.slow_next]
            self.slow_next += 1

    def slow_off(self, *_: object) -> None:
        self.extra_s = 0.0

    def stats(self) -> dict:
        return {"role": self.spec.role, "instance": self.spec.instance, "processed": self.processed,
                "dead_letters": self.dead_letters, "absorbed": self.handler.absorbed,
                "rejoins": self.rejoins, **self.batching.counts()}

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.ready = True
        self.owned |= {(p.topic, p.partition) for p in partitions}
        self.alive_at = time.monotonic()  # time in our own callbacks is no stall
        if self.spec.role in self.topology.restore_from:
            # Restore outside the rebalance callback, before handling any message.
            self._pending_restore.extend(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.transactional and self.in_transaction:
            # Commit what was consumed so far before another instance takes over from those offsets.
            try:
                self._commit_transaction()
            except KafkaException as exc:
                print(f"{self.spec.client_id}: transaction commit on revoke failed: {exc}", file=sys.stderr)
        elif not self.transactional:
            # Hand the partitions over with everything acknowledged committed: fewer replays.
            self.producer.flush(10)
            try:
                self._store_acknowledged()
                consumer.commit(asynchronous=False)
            except KafkaException:
                pass
        self.owned -= {(p.topic, p.partition) for p in partitions}
        self.handler.revoke({p.partition for p in partitions})
        self.alive_at = time.monotonic()

    def _restore(self) -> None:
        wanted = sorted({p.partition for p in self._pending_restore})
        self._pending_restore.clear()
        if not wanted:
            return
        from bench.kafka.records import read_topics

        # Every topic of a run is keyed by orderId with the same partition count, so an
        # order's own past output lives on the same partition number as its input.
        topics = list(self.topology.restore_from[self.spec.role])
        conf = clients.consumer_config(self.spec.bootstrap_servers, self.spec.workload, "unused", self.spec.client_extra)
        records = read_topics(self.spec.bootstrap_servers, topics, conf, RESTORE_TIMEOUT_S, partitions=wanted)
        started = time.monotonic()
        count = 0

        def values():
            nonlocal count
            for record in records:
                if record.value is not None:
                    count += 1
                    yield record.topic, record.value

        self.handler.restore(values(), self.outbox)
        print(f"{self.spec.client_id}: restored from {count} records of {', '.join(topics)} partitions {wanted} "
              f"in {time.monotonic() - started:.2f}s", file=sys.stderr, flush=True)

    def run(self, on_ready=None) -> None:
        if self.transactional:
            self.producer.init_transactions(30)
        self._subscribe()
        announced = False
        next_check = 0.0
        self.alive_at = time.monotonic()
        try:
            while self.running:
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + 1.0
                    self.trim.maybe(time.monotonic())
                    if self.report_backlog is not None:
                        self.report_backlog(kafkastats.backlog(self.batching.latest.get("consumer")))
                first = self.consumer.poll(POLL_S)
                if self.ready and not announced:
                    announced = True
                    if on_ready:
                        on_ready()
                batch = [first] if first is not None else []
                if batch:
                    batch += self.consumer.consume(BATCH_MAX - 1, 0)
                if time.monotonic() - self.alive_at > self.stall_s:
                    # Even with nothing fetched yet: the fetcher, woken too, would soon hand
                    # over input from partitions that have already moved on.
                    self._rejoin()  # the batch is handed back unhandled
                    batch = []
                self._step(batch)
                self.alive_at = time.monotonic()
        finally:
            self._close()

    def _subscribe(self) -> None:
        self.consumer.subscribe(list(self.topology.subscriptions[self.spec.role]),
                                on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke)

    def _rejoin(self) -> None:
        self.rejoins += 1
        print(f"{self.spec.client_id}: stalled {time.monotonic() - self.alive_at:.1f}s, past the session timeout: "
              f"rejoining the group and restoring state", file=sys.stderr, flush=True)
        self.consumer.unsubscribe()  # revokes every partition; their fetched messages are dropped
        self._subscribe()
        self.alive_at = time.monotonic()

    def _step(self, messages: list) -> None:
        if self.transactional and not self.in_transaction:
            self.producer.begin_transaction()
            self.in_transaction, self.tx_started = True, time.monotonic()
        batch = _Batch()
        self.outbox.batch = None if self.transactional else batch
        if self._pending_restore:
            # The handler's clock must be current before restored sagas set their deadlines.
            self.handler.tick(time.monotonic(), self.outbox)
            self._restore()
            self.alive_at = time.monotonic()
        for msg in messages:
            now = time.monotonic()
            if now - self.alive_at > self.stall_s:
                self._rejoin()  # stopped mid-batch: the rest is handed back unhandled
                break
            self.alive_at = now  # per message: slow handling is many short gaps, a stop is one long one
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    print(f"{self.spec.client_id}: consume error: {err}", file=sys.stderr)
                continue
            batch.offsets[(msg.topic(), msg.partition())] = msg.offset() + 1
            try:
                event = ev.decode(msg.value())
            except ValueError as exc:
                self._dead_letter(msg, exc)
                continue
            self.processed += 1
            if self.processing or self.extra_s:
                time.sleep(self.draw_processing_s() + self.extra_s)
            self.handler.handle(msg.topic(), msg.partition(), event, self.outbox)
        self.handler.tick(time.monotonic(), self.outbox)
        self._flush()
        if self.transactional:
            if time.monotonic() - self.tx_started >= TX_INTERVAL_S:
                self._commit_transaction()
        else:
            if batch.offsets:
                self.unacked.append(batch)
            self._store_acknowledged()

    def _flush(self) -> None:
        """Send this wake-up's outputs now and wait for their acknowledgements (serving delivery
        callbacks), at most FLUSH_TIMEOUT_S: what is still unacknowledged then goes on in the
        background and is stored later."""
        if len(self.producer):
            self.producer.flush(FLUSH_TIMEOUT_S)
        else:
            self.producer.poll(0)  # statistics and error callbacks

    def _store_acknowledged(self) -> None:
        """Store offsets of the oldest batches whose outputs are all acknowledged, in order."""
        while self.unacked and self.unacked[0].pending == 0:
            if self.unacked[0].failed:
                # An output was not delivered: exit with this batch's offsets unstored, so its input is
                # replayed rather than its effect lost. Not a KafkaException: the commit paths that
                # tolerate those (revoke, close) must not swallow this and commit later offsets.
                raise OutputNotDelivered(f"{self.spec.client_id}: an output was not delivered; exiting so its input "
                                         "is consumed again")
            batch = self.unacked.popleft()
            # A partition revoked meanwhile is the new owner's to commit (it replays from there).
            owned = [TopicPartition(t, p, o) for (t, p), o in batch.offsets.items() if (t, p) in self.owned]
            if owned:
                self.consumer.store_offsets(offsets=owned)

    def _commit_transaction(self) -> None:
        assignment = self.consumer.assignment()
        if assignment:
            positions = [p for p in self.consumer.position(assignment) if p.offset >= 0]
            if positions:
                self.producer.send_offsets_to_transaction(positions, self.consumer.consumer_group_metadata())
        self.producer.commit_transaction()
        self.in_transaction = False

    def _dead_letter(self, msg, exc: Exception) -> None:
        self.dead_letters += 1
        headers = [("bench.source.topic", msg.topic().encode()), ("bench.source.partition", str(msg.partition()).encode()),
                   ("bench.source.offset", str(msg.offset()).encode()), ("bench.error", str(exc)[:200].encode()),
                   ("bench.role", self.spec.role.encode())]
        self.outbox.send(ev.DEAD_LETTER, msg.value(), msg.key(), headers)

    def _close(self) -> None:
        try:
            if self.transactional:
                if self.in_transaction:
                    self._commit_transaction()
            else:
                self.producer.flush(10)
                self._store_acknowledged()
                self.consumer.commit(asynchronous=False)
        except KafkaException:
            pass
        finally:
            self.consumer.close()


def _exit_with(parent_alive: Callable[[], bool], name: str, period_s: float = 0.5) -> None:
    """End this process soon after the harness that spawned it is gone. A thread, not a check in
    the service loop: the loop can sit in a flush or a poll for many seconds when the broker died
    with the harness, and nobody will read what this instance still holds, so a graceful close
    (flush, commit, leave the group) is not worth waiting for."""
    def watch() -> None:
        while parent_alive():
            time.sleep(period_s)
        print(f"{name}: the harness is gone; exiting", file=sys.stderr, flush=True)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve(spec: ServiceSpec, parent_alive=lambda: True, announce=print, supervised: bool = False) -> None:
    """Run one service instance until SIGTERM; print READY once it has joined its group and,
    when ``supervised`` by a run, its backlog each second after."""
    # Long-lived ledgers and saga tables make every full collection slower as a run
    # goes on; messages are short-lived, so collect the young generation only, rarely.
    gc.freeze()
    gc.set_threshold(50_000, 1_000, 1_000_000)
    service = Service(spec)
    signal.signal(signal.SIGTERM, service.stop)
    signal.signal(signal.SIGINT, service.stop)
    signal.signal(signal.SIGUSR1, service.slow_on)
    signal.signal(signal.SIGUSR2, service.slow_off)
    if supervised:
        _exit_with(parent_alive, spec.client_id)
        service.report_backlog = lambda n: announce(f"{BACKLOG_PREFIX}{'' if n is None else n}", flush=True)
    try:
        service.run(on_ready=lambda: announce("READY", flush=True))
    finally:
        # The supervisor sums these lines over every incarnation that exited cleanly.
        print(STATS_PREFIX + json.dumps(service.stats()), file=sys.stderr, flush=True)
