"""Topics on the real broker: bench deletes only what it created, and one run at a time."""
from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from bench.kafka import clients, topics
from bench import patterns
from bench.kafka.errors import BrokerError
from bench.run.run import RunRequest, run
from bench.flow.workload import Workload

pytestmark = pytest.mark.broker


def _registry(bootstrap_servers: str, run_id: str | None = None) -> topics.Registry:
    return topics.registry(clients.admin_config(bootstrap_servers), run_id or uuid.uuid4().hex[:8])


def _records(bootstrap_servers: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "count"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return high - low
    finally:
        consumer.close()


def test_a_topic_bench_did_not_create_is_kept_unless_the_user_asks(bootstrap_servers):
    name = f"users-topic-{uuid.uuid4().hex[:8]}"
    conf = clients.admin_config(bootstrap_servers)
    admin = topics.admin(conf)
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap_servers})
    producer.produce(name, b'{"orderId": "12345", "status": "created"}')
    producer.flush(10)
    registry = _registry(bootstrap_servers)
    with pytest.raises(BrokerError) as err:
        topics.recreate(admin, [name], Workload(name="w"), registry=registry)
    assert f"topic {name} already exists and bench did not create it: pass --recreate-topics" in str(err.value)
    assert _records(bootstrap_servers, name) == 1  # untouched
    topics.recreate(admin, [name], Workload(name="w"), registry=registry, force=True)
    assert _records(bootstrap_servers, name) == 0
    assert name in registry.created()
    topics.recreate(admin, [name], Workload(name="w"), registry=_registry(bootstrap_servers))  # now it is bench's
    admin.delete_topics([name])[name].result(timeout=30)


def test_a_claimed_cluster_refuses_a_second_run_until_released(bootstrap_servers):
    first, second = _registry(bootstrap_servers, "first"), _registry(bootstrap_servers, "second")
    with first.claim(60):
        with pytest.raises(BrokerError, match=r"another bench run \(first, pid \d+ on .*\) is using this cluster"):
            with second.claim(60):
                pass
        # The refused claim took nothing: the first still holds the cluster.
        assert first.holder()["run"] == "first"
    with second.claim(60):
        assert second.holder()["run"] == "second"
    assert second.holder() is None


def test_a_claim_its_run_never_released_lapses(bootstrap_servers, monkeypatch):
    monkeypatch.setattr(topics, "CLAIM_MARGIN_S", 0.0)
    killed = _registry(bootstrap_servers, "killed").claim(1.0)
    killed.__enter__()  # and never left: the process was SIGKILLed
    with pytest.raises(BrokerError):
        with _registry(bootstrap_servers).claim(1.0):
            pass
    time.sleep(1.5)
    with _registry(bootstrap_servers, "after").claim(1.0):
        pass


def test_a_run_refuses_a_foreign_entry_topic_before_starting_anything(bootstrap_servers, tmp_path):
    """As after the tutorial's `kafka-topics --create --topic order-created`."""
    conf = clients.admin_config(bootstrap_servers)
    admin = topics.admin(conf)
    if "order-created" in admin.list_topics(timeout=10).topics:
        admin.delete_topics(["order-created"])["order-created"].result(timeout=30)
        while "order-created" in admin.list_topics(timeout=10).topics:
            time.sleep(0.2)
    admin.create_topics([NewTopic("order-created", 1, 1)])["order-created"].result(timeout=30)
    workload = Workload(name="w", rate_per_s=50.0, duration_s=1.0, warmup_s=0.0, drain_s=5.0)
    with pytest.raises(BrokerError, match="order-created already exists and bench did not create it"):
        run(RunRequest(patterns.get("choreography"), workload, bootstrap_servers, output=tmp_path / "r"),
            echo=lambda _: None)
    assert not (tmp_path / "r").exists()  # nothing half-written
    outcome = run(RunRequest(patterns.get("choreography"), workload, bootstrap_servers, output=tmp_path / "r",
                             recreate_topics=True), echo=lambda _: None)
    assert outcome.summary["orders"]["started"] > 0


def test_a_claim_of_a_dead_process_on_this_machine_is_void(bootstrap_servers):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    registry = _registry(bootstrap_servers, "dead")
    registry.write({topics.CLAIM: {"run": "dead", "pid": int(dead.stdout), "host": __import__("socket").gethostname(),
                                   "until_s": time.time() + 600}})
    with _registry(bootstrap_servers, "next").claim(1.0):  # not refused for ten minutes
        pass
