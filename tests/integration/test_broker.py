"""The embedded broker itself: a 3-node cluster, bad input, clean stop."""
from __future__ import annotations

import socket

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from bench.broker import dist, embedded
from bench.kafka.errors import BrokerError

pytestmark = pytest.mark.broker


def test_three_node_cluster_takes_replication_factor_3_and_stops_clean(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_BROKER_DIR", str(tmp_path))
    with embedded.embedded(nodes=3, port=19192) as cluster:
        pids = [n.pid for n in cluster.nodes]
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
        admin.create_topics([NewTopic("rf3", 3, 3)])["rf3"].result(timeout=30)
        md = admin.list_topics("rf3", timeout=10).topics["rf3"]
        assert all(len(p.replicas) == 3 for p in md.partitions.values())
    assert not any(embedded._pid_is_ours(pid) for pid in pids)


def test_port_in_use_is_named_and_nothing_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_BROKER_DIR", str(tmp_path))
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(BrokerError, match=f"port {port} is already in use"):
            embedded.start(port=port)
    assert embedded.Cluster.load(tmp_path) is None


def test_missing_java_says_what_to_install(monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(dist.shutil, "which", lambda name: None)
    with pytest.raises(BrokerError, match="install a JDK 17"):
        dist.java_executable()


def test_stop_with_nothing_running_is_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_BROKER_DIR", str(tmp_path))
    assert embedded.stop() is None


def test_warm_up_sends_many_small_requests_and_leaves_no_topic(bootstrap_servers):
    from bench.broker.warmup import TOPIC, warm_up

    sent = warm_up(bootstrap_servers, duration_s=1.0)
    assert sent > 200  # a flush per few messages: hundreds of produce and fetch requests in a second
    assert TOPIC not in AdminClient({"bootstrap.servers": bootstrap_servers}).list_topics(timeout=10).topics

