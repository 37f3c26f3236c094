"""What a run cost: /proc readings, librdkafka statistics reduced to batching, the summary block."""
from __future__ import annotations

import json
import os
import threading
import time

from bench.kafka import kafkastats
from bench.run import procstat
from bench.run.cost import cost


def test_usage_tells_the_main_thread_from_the_others():
    def burn(seconds):
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass

    before = procstat.usage(os.getpid())
    worker = threading.Thread(target=burn, args=(0.3,))
    worker.start()
    worker.join()
    after = procstat.usage(os.getpid())
    used = after - before
    assert used.other_s >= 0.2  # the worker's time stays counted after it exited
    assert used.switches >= 0 and used.cpu_s == used.main_s + used.other_s
    assert procstat.usage(2**22 + 12345) is None  # no such process


def _stats(kind: str, produce: int, fetch: int, tx: int, rx: int) -> str:
    return json.dumps({"name": f"c#{kind}-1", "type": kind, "txmsgs": tx, "rxmsgs": rx, "brokers": {
        "localhost:9092/1": {"req": {"Produce": produce, "Fetch": fetch, "Metadata": 3}},
        "GroupCoordinator": {"req": {"Produce": 0, "Fetch": 0, "Heartbeat": 7}}}})


def test_batching_keeps_the_latest_statistics_of_each_client():
    batching = kafkastats.Batching()
    conf = batching.conf("producer")
    assert conf["statistics.interval.ms"] == kafkastats.INTERVAL_MS
    conf["stats_cb"](_stats("producer", 1, 0, 5, 0))
    conf["stats_cb"](_stats("producer", 10, 0, 200, 0))  # cumulative: the latest replaces the first
    batching.conf("consumer")["stats_cb"](_stats("consumer", 0, 40, 0, 120))
    counts = batching.counts()
    assert counts == {"produce_requests": 10, "produced": 200, "fetch_requests": 40, "fetched": 120}
    assert kafkastats.ratios(counts) == {"messages_per_produce_request": 20.0, "messages_per_fetch": 3.0}
    assert kafkastats.ratios(dict.fromkeys(kafkastats.COUNTS, 0)) == {
        "messages_per_produce_request": None, "messages_per_fetch": None}


def test_cost_per_order_by_process_and_thread():
    processes = {"load_generator": procstat.Usage(0.5, 0.25, 1000), "payment": procstat.Usage(1.0, 0.5, 3000)}
    batching = {"load_generator": {"produce_requests": 10, "produced": 1000, "fetch_requests": 50, "fetched": 1000},
                "payment": {"produce_requests": 90, "produced": 1000, "fetch_requests": 50, "fetched": 1000}}
    c = cost(10_000, 10.0, processes, 2.25, batching)
    assert c["cpu_us_per_order"]["payment"] == {"main": 100.0, "library": 50.0}
    assert c["cpu_us_per_order"]["harness"] == 225.0 and c["cpu_us_per_order"]["broker"] == 225.0
    assert c["cpu_us_per_order"]["total"] == 450.0
    assert c["cores_busy"] == 0.45
    assert c["switches_per_s"] == {"load_generator": 100, "payment": 300}
    assert c["batching"]["all"] == {"messages_per_produce_request": 20.0, "messages_per_fetch": 20.0}
    external = cost(10_000, 10.0, processes, None, batching)  # a cluster that is not ours
    assert external["cpu_us_per_order"]["broker"] is None and external["cores_busy"] is None
