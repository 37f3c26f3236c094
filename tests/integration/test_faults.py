"""Faults on the real broker: a crash, an orchestrator crash, poison, broker failover. Nothing is lost."""
from __future__ import annotations

import pytest

from bench.flow import events as ev
from bench import patterns
from bench.broker import embedded
from bench.run.run import RunRequest, run
from bench.flow.workload import Workload
from bench.flow.saga import DEFAULT as SAGA

PAY, INV, SHP = SAGA.steps

pytestmark = pytest.mark.broker


def workload(*faults, **changes):
    settings = dict(name="faults-test", arrival="constant", rate_per_s=200.0, duration_s=16.0, warmup_s=2.0,
                    drain_s=60.0)
    return Workload(**{**settings, **changes}, faults=tuple(faults))


def fault(**spec):
    from bench.flow.workload import parse_workload

    return parse_workload({"name": "f", "duration": "16s", "warmup": "2s", "faults": [spec]}).faults[0]


def assert_nothing_lost(outcome):
    s = outcome.summary
    orders = s["orders"]
    assert orders["lost"] == orders["stuck"] == orders["duplicates"] == orders["inconsistent"] == 0, (orders, s["audit"]["examples"])
    assert orders["completed"] + orders["cancelled"] == orders["started"] > 2000
    assert s["audit"]["multiple_terminal"] == 0 and s["audit"]["clean"], s["audit"]["examples"]
    # The live audit judged no order before its last step event was read (GRACE_S holds under faults).
    assert s["audit"]["late_events"] == 0 and s["audit"]["read_to_end"], s["audit"]["examples"]
    assert s["faults"] and s["faults"][0]["error"] is None, s["faults"]
    return s


@pytest.mark.parametrize("pattern,role", [("choreography", "payment"), ("orchestration", "orchestrator")])
def test_a_killed_and_restarted_role_loses_no_order(bootstrap_servers, tmp_path, pattern, role):
    w = workload(fault(type="kill", at="8s", duration="1s", role=role))
    s = assert_nothing_lost(run(RunRequest(patterns.get(pattern), w, bootstrap_servers, output=tmp_path / "r"),
                                echo=lambda line: None))
    figures = s["faults"][0]
    assert figures["target"] == f"{role}-0" and figures["end_s"] > figures["at_s"]
    assert figures["peak_backlog"] > 0 and figures["p99_in_window_ms"] is not None
    assert {"time_to_detect_s", "recovery_s", "duplicates_absorbed", "dead_letters", "compensations"} <= set(figures)


@pytest.mark.parametrize("pattern", ["choreography", "orchestration"])
def test_poison_messages_end_in_the_dead_letter_topic_and_good_orders_finish(bootstrap_servers, tmp_path, pattern):
    w = workload(fault(type="poison", at="6s", count=25, topic=ev.ORDER_CREATED))
    s = assert_nothing_lost(run(RunRequest(patterns.get(pattern), w, bootstrap_servers, output=tmp_path / "r"),
                                echo=lambda line: None))
    assert s["faults"][0]["dead_letters"] == 25
    assert s["audit"]["dead_letters"] == 25


def test_broker_failover_on_three_nodes_loses_no_order(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_BROKER_DIR", str(tmp_path / "broker"))
    # Steps may wait out the whole failover: a timeout shorter than it would compensate orders
    # whose replies are merely late (consistent, but not what this test is about).
    w = workload(fault(type="broker-kill", at="7s", duration="5s"), replication_factor=3, min_insync_replicas=2,
                 step_timeout_s=30.0)
    with embedded.embedded(nodes=3, port=19392) as cluster:
        outcome = run(RunRequest(patterns.get("orchestration"), w, cluster.bootstrap_servers, output=tmp_path / "r"),
                      echo=lambda line: None)
    s = assert_nothing_lost(outcome)
    assert s["faults"][0]["target"].startswith("broker ")


def test_the_stall_guard_hands_back_fetched_input_rejoins_and_applies_nothing_twice(bootstrap_servers):
    import threading
    import time
    import uuid

    from confluent_kafka import Producer

    from bench.kafka import clients, topics
    from bench.kafka.records import read_topics
    from bench.run.runtime import Service, ServiceSpec

    pattern, w = patterns.get("choreography"), Workload(name="stall")
    topology = pattern.topology(w.saga)
    conf = clients.admin_config(bootstrap_servers)
    topics.recreate(topics.admin(conf), topology.topics, w, topology.compacted, registry=topics.registry(conf, "stall-test"))
    service = Service(ServiceSpec(pattern, "payment", 0, bootstrap_servers, w, group_prefix=f"stall-{uuid.uuid4().hex}"))
    producer = Producer({"bootstrap.servers": bootstrap_servers})

    def send(first, n):
        for i in range(first, first + n):
            producer.produce(ev.ORDER_CREATED, ev.encode({"orderId": f"o-{i}", "status": ev.CREATED}), f"o-{i}")
        producer.flush(10)

    def wait_for(condition, what):
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.1)

    loop = threading.Thread(target=service.run)
    loop.start()
    try:
        send(0, 200)
        wait_for(lambda: service.processed == 200, "first orders handled")
        send(200, 200)
        deadline = time.monotonic() + 30
        while service.rejoins == 0:  # as if the process had been stopped for 100 s
            assert time.monotonic() < deadline, "no rejoin after a stall past the session timeout"
            service.alive_at -= 100
            time.sleep(0.2)
        wait_for(lambda: service.processed >= 400, "every order handled after the rejoin")
    finally:
        service.stop()
        loop.join(30)
    conf = clients.consumer_config(bootstrap_servers, w, "unused")
    facts = [r.value["orderId"] for r in read_topics(bootstrap_servers, [PAY.events_topic], conf, 30)]
    assert sorted(facts) == sorted(f"o-{i}" for i in range(400)), "an order charged twice or never"
