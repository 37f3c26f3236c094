"""Consumer lag of the run's service groups, sampled in the background once a second."""
from __future__ import annotations

import threading

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

PERIOD_S = 1.0


class LagProbe(threading.Thread):
    """Sum over groups and partitions of (log end offset - committed offset)."""

    def __init__(self, admin_conf: dict, subscriptions: dict[str, tuple[str, ...]], partitions: int) -> None:
        super().__init__(name="lag", daemon=True)
        self.admin = AdminClient(admin_conf)
        self.subscriptions = subscriptions  # group id -> topics it consumes
        self.partitions = partitions
        self.latest: int | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(PERIOD_S):
            try:
                self.latest = self.sample()
            except Exception:  # noqa: BLE001 - a missed sample shows as no value, never stops the run
                self.latest = None

    def sample(self) -> int:
        topics = {t for ts in self.subscriptions.values() for t in ts}
        tps = [TopicPartition(t, p) for t in topics for p in range(self.partitions)]
        ends = {(tp.topic, tp.partition): info.offset for tp, info in
                ((tp, f.result()) for tp, f in self.admin.list_offsets({tp: OffsetSpec.latest() for tp in tps},
                                                                       request_timeout=10).items())}
        lag = 0
        for group, group_topics in self.subscriptions.items():
            request = [ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t in group_topics
                                                            for p in range(self.partitions)])]
            result = self.admin.list_consumer_group_offsets(request, request_timeout=10)[group].result()
            for tp in result.topic_partitions:
                committed = tp.offset if tp.offset >= 0 else 0
                lag += max(0, ends.get((tp.topic, tp.partition), 0) - committed)
        return lag

    def stop(self) -> None:
        self.stopping.set()
