"""Creating a pattern's topics fresh before a run, so the audit reads only this run's records."""
from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from bench.broker.errors import BrokerError
from bench.workload import Workload

TIMEOUT_S = 60.0


def admin(conf: dict) -> AdminClient:
    return AdminClient(conf)


def check_reachable(client: AdminClient, bootstrap_servers: str, timeout_s: float = 10.0) -> int:
    """Number of brokers; a one-line BrokerError when the cluster does not answer."""
    try:
        return len(client.list_topics(timeout=timeout_s).brokers)
    except KafkaException:
        raise BrokerError(f"cannot reach Kafka at {bootstrap_servers} within {timeout_s:.0f}s: "
                          "start it (`bench broker start`) or check --bootstrap-servers and --kafka-config") from None


def recreate(client: AdminClient, topics: Iterable[str], workload: Workload, compacted: Iterable[str] = ()) -> None:
    """Delete ``topics`` if they exist, then create them with the workload's layout."""
    topics = list(topics)
    existing = set(client.list_topics(timeout=TIMEOUT_S).topics)
    doomed = [t for t in topics if t in existing]
    if doomed:
        for topic, future in client.delete_topics(doomed, operation_timeout=TIMEOUT_S).items():
            future.result()
        _wait(client, lambda present: not (set(doomed) & present), "deleted")
    compacted = set(compacted)
    new = [
        NewTopic(t, workload.partitions, workload.replication_factor, config={
            "min.insync.replicas": str(workload.min_insync_replicas),
            **({"cleanup.policy": "compact"} if t in compacted else {}),
        })
        for t in topics
    ]
    for topic, future in client.create_topics(new, operation_timeout=TIMEOUT_S).items():
        try:
            future.result()
        except KafkaException as exc:
            raise BrokerError(f"cannot create topic {topic}: {exc.args[0].str()}") from None
    _wait(client, lambda present: set(topics) <= present, "created")


def _wait(client: AdminClient, done, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if done(set(client.list_topics(timeout=TIMEOUT_S).topics)):
            return
        time.sleep(0.2)
    raise BrokerError(f"topics not {what} within {TIMEOUT_S:.0f}s")
