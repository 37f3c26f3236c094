"""Consumer lag of the run's service groups, sampled in the background once a second.

Plain consumers (one per group, never subscribed) read committed offsets and
watermarks. Not the AdminClient: librdkafka 2.x aborted the whole harness on an
internal assertion when admin offset requests met a broker being killed
(seen in a broker-failover run), and a lag sample is not worth a crash.
"""
from __future__ import annotations

import threading

from confluent_kafka import Consumer, KafkaException, TopicPartition

PERIOD_S = 1.0
TIMEOUT_S = 2.0


class LagProbe(threading.Thread):
    """Sum over groups and partitions of (log end offset - committed offset)."""

    def __init__(self, client_conf: dict, subscriptions: dict[str, tuple[str, ...]], partitions: int) -> None:
        super().__init__(name="lag", daemon=True)
        self.consumers = {group: Consumer({**client_conf, "group.id": group, "enable.auto.commit": False})
                          for group in subscriptions}
        self.subscriptions = subscriptions  # group id -> topics it consumes
        self.partitions = partitions
        self.latest: int | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.wait(PERIOD_S):
                try:
                    self.latest = self.sample()
                except KafkaException:
                    self.latest = None  # a missed sample shows as no value, never stops the run
        finally:
            for consumer in self.consumers.values():
                consumer.close()

    def sample(self) -> int:
        ends: dict[tuple[str, int], int] = {}
        lag = 0
        for group, topics in self.subscriptions.items():
            consumer = self.consumers[group]
            tps = [TopicPartition(t, p) for t in topics for p in range(self.partitions)]
            for tp in consumer.committed(tps, timeout=TIMEOUT_S):
                key = (tp.topic, tp.partition)
                if key not in ends:
                    ends[key] = consumer.get_watermark_offsets(TopicPartition(*key), timeout=TIMEOUT_S)[1]
                lag += max(0, ends[key] - max(tp.offset, 0))
        return lag

    def stop(self) -> None:
        self.stopping.set()
