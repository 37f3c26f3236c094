"""What a run cost: /proc readings, librdkafka statistics reduced to batching, the summary block."""
from __future__ import annotations

import json
import os
import threading
import time

import pytest

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


def test_usage_reads_how_long_the_main_thread_waited_for_a_core():
    """With twice as many spinning processes as cores beside it, a spinning main thread spends much of
    its time runnable but not running: the kernel's run-queue delay, read from schedstat."""
    import subprocess
    import sys

    def spin(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass

    if procstat._waits(os.getpid())[0] is None:
        pytest.skip("this kernel keeps no scheduler statistics (schedstat)")
    cores = len(os.sched_getaffinity(0))  # the cores this process may run on
    spinners = [subprocess.Popen([sys.executable, "-c", "import time\nend = time.monotonic() + 1.5\n"
                                  "while time.monotonic() < end: pass"]) for _ in range(2 * cores)]
    try:
        time.sleep(0.2)  # the spinners are running
        before = procstat.usage(os.getpid())
        spin(0.8)
        used = procstat.usage(os.getpid()) - before
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()
    assert used.waited_s is not None and used.waited_s > 0.2  # of 0.8 s, sharing with 2 others per core
    assert used.waited_s + used.main_s <= 0.8 + 0.1  # waiting and running are parts of the same wall time
    assert used.runs > 0 and used.waited_s / used.runs > 0.0005  # each turn on a core came after a wait


def test_usage_reported_by_an_agent_or_a_worker_reads_back_and_refuses_junk_quietly():
    used = procstat.Usage(1.5, 0.25, 7, 0.125, 40)
    assert procstat.Usage.from_dict(json.loads(json.dumps(used.to_dict()))) == used
    # An older agent reports no wait: not reported, and so none in any sum it enters.
    old = procstat.Usage.from_dict({"main_s": 1.0, "other_s": 0.5, "switches": 3})
    assert old == procstat.Usage(1.0, 0.5, 3, None, 0) and (old + used).waited_s is None
    assert procstat.Usage.from_dict(["not", "a", "dict"]) == procstat.Usage(0.0, 0.0, 0, None)
    assert procstat.Usage.from_dict({"main_s": "1", "waited_s": True}) == procstat.Usage(0.0, 0.0, 0, None)
    # json.loads takes NaN, Infinity and integers no float holds: none of them is a figure.
    junk = json.loads('{"main_s": NaN, "other_s": Infinity, "switches": 1e400, "waited_s": ' + "9" * 400 + ', "runs": -Infinity}')
    assert procstat.Usage.from_dict(junk) == procstat.Usage(0.0, 0.0, 0, None, 0)


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
    processes = {"load_generator": procstat.Usage(0.5, 0.25, 1000, 0.02, 400),
                 "payment": procstat.Usage(1.0, 0.5, 3000, None, 900)}
    batching = {"load_generator": {"produce_requests": 10, "produced": 1000, "fetch_requests": 50, "fetched": 1000},
                "payment": {"produce_requests": 90, "produced": 1000, "fetch_requests": 50, "fetched": 1000}}
    c = cost(10_000, 10.0, processes, 2.25, batching)
    assert c["cpu_us_per_order"]["payment"] == {"main": 100.0, "library": 50.0}
    assert c["cpu_us_per_order"]["harness"] == 225.0 and c["cpu_us_per_order"]["broker"] == 225.0
    assert c["cpu_us_per_order"]["total"] == 450.0
    assert c["cores_busy"] == 0.45
    assert c["switches_per_s"] == {"load_generator": 100, "payment": 300}
    assert c["wait_for_core_us"] == {"load_generator": {"per_order": 2.0, "per_run": 50.0},
                                     "payment": {"per_order": None, "per_run": None}}  # not reported
    assert c["batching"]["all"] == {"messages_per_produce_request": 20.0, "messages_per_fetch": 20.0}
    external = cost(10_000, 10.0, processes, None, batching)  # a cluster that is not ours
    assert external["cpu_us_per_order"]["broker"] is None and external["cores_busy"] is None


def test_the_cost_line_names_the_longest_wait_for_a_core_and_skips_it_when_not_measured():
    from bench.results.headline import _cost_line

    processes = {"load_generator": procstat.Usage(0.5, 0.25, 1000, 0.02, 400),
                 "payment": procstat.Usage(1.0, 0.5, 3000, 0.09, 900)}
    line = _cost_line(cost(10_000, 10.0, processes, 2.25, {}))
    assert "wait for a core 100 us per run (payment, the longest)" in line
    unmeasured = {name: procstat.Usage(1.0, 0.5, 10, None) for name in processes}
    assert "wait for a core" not in _cost_line(cost(10_000, 10.0, unmeasured, 2.25, {}))
    older = cost(10_000, 10.0, processes, 2.25, {})
    del older["wait_for_core_us"]  # a result directory written before it was measured
    assert "wait for a core" not in _cost_line(older)
