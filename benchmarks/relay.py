"""A bare Python relay, the floor the harness is measured against (run by benchmarks/overhead.py).

    python benchmarks/relay.py BOOTSTRAP IN_TOPIC OUT_TOPIC COUNT [--flush] [PROP=VALUE ...]

Consumes COUNT messages from IN_TOPIC as the service runtime does (wait for one,
take up to 499 more that are already there), decodes and
encodes each with orjson and produces it to OUT_TOPIC without a delivery
callback: what any Python consume-transform-produce service must do at least.
With ``--flush`` it flushes after every batch, as the service runtime does.
Prints one JSON line: messages, seconds from the first message to the last
acknowledgement, and CPU seconds (all threads, librdkafka's included) from the
subscription on, so what the fetcher does ahead of the first message counts too.
"""
from __future__ import annotations

import json
import resource
import sys
import time

import orjson
from confluent_kafka import Consumer, Producer


def _cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def main(argv: list[str]) -> None:
    flush = "--flush" in argv
    args = [a for a in argv if a != "--flush"]
    bootstrap, in_topic, out_topic, count = args[0], args[1], args[2], int(args[3])
    props = dict(a.split("=", 1) for a in args[4:])
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"relay-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         **{k: v for k, v in props.items() if k.startswith("fetch.")}})
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2,
                         **{k: v for k, v in props.items() if not k.startswith("fetch.")}})
    consumer.subscribe([in_topic])
    print("READY", flush=True)
    relayed = 0
    began = cpu_began = None
    while relayed < count:
        first = consumer.poll(0.1)
        if first is None:
            continue
        msgs = [first, *consumer.consume(499, 0)]
        if began is None:
            began, cpu_began = time.monotonic(), _cpu_s()
        for msg in msgs:
            if msg.error() is not None:
                continue
            producer.produce(out_topic, orjson.dumps(orjson.loads(msg.value())), msg.key())
            relayed += 1
        if flush:
            producer.flush(1.0)
        else:
            producer.poll(0)
    producer.flush(30)
    seconds, cpu = time.monotonic() - began, _cpu_s() - cpu_began
    consumer.close()
    print(json.dumps({"messages": relayed, "seconds": seconds, "cpu_s": cpu}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
