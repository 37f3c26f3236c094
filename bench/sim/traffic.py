"""Background traffic for calibration: ``python -m bench.sim.traffic RATE SECONDS BOOTSTRAP WORKLOAD TOPIC``.

Produces ``RATE`` small JSON messages a second to ``TOPIC`` with the workload's
client settings and consumes them back with the runtime's poll loop, decoding
each, for ``SECONDS``; prints ``<produced> <consumed>``. Run in its own process,
so the broker and the machine carry this load while calibration measures the
transport beside it.
"""
from __future__ import annotations

import sys
import threading
import time

import orjson
from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

from bench.kafka import clients
from bench.run.runtime import BATCH_MAX, POLL_S
from bench.flow.workload import load_workload

TICK_S = 0.005


def _consume(consumer: Consumer, stop: threading.Event, counted: list[int]) -> None:
    while not stop.is_set():
        first = consumer.poll(POLL_S)
        if first is None:
            continue
        for msg in [first, *consumer.consume(BATCH_MAX - 1, 0)]:
            if msg.error() is None:
                orjson.loads(msg.value())
                counted[0] += 1


def run(rate_per_s: float, seconds: float, bootstrap: str, workload_path: str, topic: str) -> tuple[int, int]:
    workload = load_workload(workload_path)
    producer = Producer(clients.producer_config(bootstrap, workload))
    consumer = Consumer(clients.consumer_config(bootstrap, workload, f"bench-traffic-{time.time_ns()}"))
    consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in range(workload.partitions)])
    stop, counted = threading.Event(), [0]
    reader = threading.Thread(target=_consume, args=(consumer, stop, counted), daemon=True)
    reader.start()
    start = time.monotonic()
    produced = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate_per_s)
        while produced < due:
            value = orjson.dumps({"orderId": f"traffic-{produced}", "status": "traffic", "ts_us": time.time_ns() // 1000})
            try:
                producer.produce(topic, value, f"traffic-{produced}")
            except BufferError:
                producer.poll(0.001)
                continue
            produced += 1
        producer.poll(0)
        time.sleep(TICK_S)
    producer.flush(30)
    time.sleep(0.5)
    stop.set()
    reader.join(10)
    consumer.close()
    return produced, counted[0]


if __name__ == "__main__":
    rate, seconds, bootstrap, workload_path, topic = sys.argv[1:6]
    produced, consumed = run(float(rate), float(seconds), bootstrap, workload_path, topic)
    print(produced, consumed, flush=True)
