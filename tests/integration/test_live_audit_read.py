"""The live audit's read loop on the real broker: what it takes from librdkafka's messages is
what the audit's rules are given (its decode is inline there, for speed: this holds it to ev.decode's rule)."""
from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from bench.flow import events as ev
from bench.kafka import clients, topics
from bench.run.live_audit import _Follower

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]


def test_the_read_loop_counts_what_the_audit_cannot_decode_as_undecodable_and_skips_tombstones(bootstrap_servers, tmp_path):
    topic = f"bench-test-live-read-{uuid.uuid4().hex[:8]}"
    admin = topics.admin(clients.admin_config(bootstrap_servers))
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    follower = None
    try:
        values = [b"not json", b"[1, 2]", b'{"status": "created"}',  # ev.decode refuses each
                  b'{"orderId": 5}',  # decoded, but no string orderId: the fold counts it undecodable
                  ev.encode({"orderId": "r1-1", "status": "created", "ts_us": 1, "t0_us": 1}),  # a good one
                  None]  # a tombstone: not a record of any order
        for value in values[:3]:
            with pytest.raises(ValueError):
                ev.decode(value)
        assert ev.decode(values[4])["orderId"] == "r1-1"
        producer = Producer({"bootstrap.servers": bootstrap_servers})
        for value in values:
            producer.produce(topic, value, key=b"r1-1")
        assert producer.flush(10) == 0
        args = argparse.Namespace(pattern="orchestration", workload=str(ROOT / "workloads" / "default.yaml"),
                                  bootstrap_servers=bootstrap_servers, kafka_config=None, run_id="r1", out=str(tmp_path))
        follower = _Follower(args)
        follower.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        follower.assigned, follower.positions = [TopicPartition(topic, 0)], {(topic, 0): 0}
        deadline = time.monotonic() + 30
        while follower.positions[(topic, 0)] < len(values) and time.monotonic() < deadline:
            follower.take(follower.consumer.consume(100, 0.5))
        assert follower.positions[(topic, 0)] == len(values), "read to the end"
        auditor = follower.auditor
        assert auditor.records == 5  # the tombstone is no record
        assert auditor.undecodable == {topic: 4}
        assert auditor.per_topic == {topic: 5}
        order = auditor.active["r1-1"]  # every record attributed to the order: by its orderId, else its key
        assert order.messages == 5 and order.bytes == sum(len(v) + len(b"r1-1") for v in values[:-1])
    finally:
        if follower is not None:
            follower.consumer.close()
        admin.delete_topics([topic])[topic].result(timeout=30)
