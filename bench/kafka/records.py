"""Every record of some topics, read from the beginning to where they ended when asked.

The audit reads a run's whole log with it, and a service rebuilding its state after a
crash or a rebalance reads its own past output (for its partitions) with it: via
assign(), no consumer group, no commits.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from bench.flow import events as ev

# Answers that mean "ask again shortly" while partition leadership moves between brokers.
_MOVING_LEADERSHIP = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.OFFSET_NOT_AVAILABLE,
    KafkaError.REQUEST_TIMED_OUT, KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN,
    # A topic created a moment ago is not yet known to every broker of a new cluster.
    KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART,
})


@dataclass(slots=True)
class Record:
    """One Kafka message as the audit sees it. ``value`` is None when it did not decode;
    ``size`` is the bytes on the wire of key plus value."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: dict | None
    timestamp_ms: int
    size: int


def read_topics(bootstrap_servers: str, topics: Iterable[str], client_config: dict,
                timeout_s: float, partitions: Iterable[int] | None = None) -> Iterator[Record]:
    """Yield every record of ``topics``, each partition from its beginning to the
    high watermark it had when this was called, via assign() (no group, no commits).
    ``partitions`` limits the read to those partition numbers of each topic.

    Missing topics and empty partitions yield nothing. Tombstones (deletes on the
    compacted saga-state topic) carry no event and are skipped. Raises
    TimeoutError when the end is not reached within ``timeout_s`` of the start.
    """
    deadline = time.monotonic() + timeout_s
    consumer = Consumer({
        **client_config,
        "bootstrap.servers": bootstrap_servers,
        "group.id": f"bench-read-{uuid.uuid4().hex}",  # never joined: assign() only
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    })
    try:
        bounds = _partition_bounds(consumer, topics, timeout_s)
        if partitions is not None:
            wanted = set(partitions)
            bounds = {tp: b for tp, b in bounds.items() if tp[1] in wanted}
        consumer.assign([TopicPartition(topic, partition, low) for (topic, partition), (low, _) in bounds.items()])
        yield from _read_assigned(consumer, {tp: high for tp, (_, high) in bounds.items()}, deadline)
    finally:
        consumer.close()


def _partition_bounds(consumer: Consumer, topics: Iterable[str], timeout_s: float) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> (low, high) watermarks of every non-empty partition."""
    deadline = time.monotonic() + timeout_s
    metadata = consumer.list_topics(timeout=timeout_s)
    bounds = {}
    for topic in topics:
        meta = metadata.topics.get(topic)
        if meta is None or (meta.error is not None and meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            continue
        if meta.error is not None:
            raise KafkaException(meta.error)
        for partition in meta.partitions:
            low, high = watermarks(consumer, TopicPartition(topic, partition), deadline)
            if high > low:
                bounds[(topic, partition)] = (low, high)
    return bounds


def watermarks(consumer: Consumer, tp: TopicPartition, deadline: float) -> tuple[int, int]:
    """Low and high watermark, asking again while leadership moves (a restore can run
    during a broker failover, and a new cluster may not have elected a leader yet, when the
    first answer is "not leader")."""
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=max(0.1, deadline - time.monotonic()), cached=False)
        except KafkaException as exc:
            error = exc.args[0]
            if not (error.retriable() or error.code() in _MOVING_LEADERSHIP) or time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def _read_assigned(consumer, ends: dict[tuple[str, int], int], deadline: float) -> Iterator[Record]:
    """Consume until every partition in ``ends`` reached its end offset (the high watermark)."""
    remaining = dict(ends)
    while remaining:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"reading the log: {len(remaining)} partitions not read to their end, e.g. "
                               f"{next(iter(remaining))}")
        for message in consumer.consume(num_messages=10_000, timeout=min(left, 1.0)):
            tp = (message.topic(), message.partition())
            end = remaining.get(tp)
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    # End of what can be read: the high watermark, or under read_committed the
                    # last stable offset (an open transaction's records are not ours to read yet).
                    # Also covers transaction markers occupying the last offsets.
                    if end is not None:
                        del remaining[tp]
                    continue
                if error.fatal() or end is not None:
                    raise KafkaException(error)
                continue  # client-level and transient: librdkafka recovers; the deadline bounds it
            if end is None:
                continue
            offset = message.offset()
            if offset < end:
                raw = message.value()
                if raw is not None:
                    yield _record(message, raw)
            if offset >= end - 1:
                del remaining[tp]


def _record(message, raw: bytes) -> Record:
    key = message.key()
    try:
        value = ev.decode(raw)
    except ValueError:
        value = None
    return Record(
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        key=None if key is None else key.decode("utf-8", "replace"),
        value=value,
        timestamp_ms=message.timestamp()[1],
        size=len(raw) + (0 if key is None else len(key)),
    )
