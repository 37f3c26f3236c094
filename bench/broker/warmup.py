"""A discarded pre-load for a broker JVM that has just started.

A fresh JVM interprets Kafka's request paths until its JIT has compiled them,
which takes thousands of requests; a run measured meanwhile measures the
compiler (orchestration at 5000 orders/s fell behind on a cold broker and was
marked invalid). The JIT counts calls, so the pre-load sends many small
produce and fetch requests (a flush per few messages), through a group
consumer that commits, on a scratch topic that is deleted afterwards.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.kafka.clients import silent_logger

TOPIC = "bench-broker-warm-up"
DURATION_S = 6.0
PER_FLUSH = 8


def warm_up(bootstrap_servers: str, duration_s: float = DURATION_S,
            progress: Callable[[str, float, float | None], None] = lambda phase, done, total: None) -> int:
    """Produce and consume through a scratch topic for ``duration_s``; returns the messages sent.
    ``progress`` hears the seconds done of ``duration_s``."""
    # A new broker answers "coordinator load in progress" for a moment; the clients retry, quietly.
    quiet = {"bootstrap.servers": bootstrap_servers, "logger": silent_logger("warm-up")}
    admin = AdminClient(quiet)
    admin.create_topics([NewTopic(TOPIC, 1, 1)], operation_timeout=30)[TOPIC].result()
    producer = Producer({**quiet, "acks": "all", "linger.ms": 0, "enable.idempotence": True})
    consumer = Consumer({**quiet, "group.id": TOPIC, "auto.offset.reset": "earliest",
                         "auto.commit.interval.ms": 100, "fetch.wait.max.ms": 5})
    consumer.subscribe([TOPIC])
    value = b'{"orderId":"warm-up","status":"created","t0_us":0,"ts_us":0,"amount":42,"items":2}'
    # The first write waits for the new broker's coordinators (a producer id): not part of the pre-load.
    producer.produce(TOPIC, value, "first")
    producer.flush(60)
    sent = 1
    began = time.monotonic()
    deadline = began + duration_s
    try:
        while time.monotonic() < deadline:
            progress("warming the broker up", min(time.monotonic() - began, duration_s), duration_s)
            for i in range(PER_FLUSH):
                producer.produce(TOPIC, value, str(i))
            producer.flush(1.0)
            sent += PER_FLUSH
            consumer.consume(PER_FLUSH * 4, 0)
        progress("warming the broker up", duration_s, duration_s)
    finally:
        consumer.close()
        producer.flush(5)
        admin.delete_topics([TOPIC], operation_timeout=30)[TOPIC].result()
    return sent
