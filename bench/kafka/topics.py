"""A run's topics on a cluster: created fresh before each run (so the audit reads only that run's
records), but only where bench may, and one run at a time.

bench keeps a registry on the cluster itself, the compacted topic ``bench-topics``: for each
topic bench created, the run that did; and a claim, the run now using the cluster and until when.
A topic bench did not create (a user's ``order-created``, another application's) is never deleted
unless the user asks (``--recreate-topics``); topics are told apart by id, so one that someone deleted
and made again under the same name is theirs. A second run against a cluster that a live run has
claimed is refused, so it cannot wipe the first one's topics mid-run; a claim that its run could
not release (the process was killed) lapses at its end time, or at once when that process ran on
this machine and is gone.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from typing import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench.kafka.errors import BrokerError
from bench.kafka.records import watermarks
from bench.flow.workload import Workload

TIMEOUT_S = 60.0


def admin(conf: dict) -> AdminClient:
    return AdminClient(conf)


def registry(conf: dict, run_id: str) -> "Registry":
    """The registry of the cluster ``conf`` (an admin client's settings) names, for one run."""
    return Registry(admin(conf), conf, run_id)


def check_reachable(client: AdminClient, bootstrap_servers: str, timeout_s: float = 10.0) -> int:
    """Number of brokers; a one-line BrokerError when the cluster does not answer."""
    try:
        return len(client.list_topics(timeout=timeout_s).brokers)
    except KafkaException:
        raise BrokerError(f"cannot reach Kafka at {bootstrap_servers} within {timeout_s:.0f}s: "
                          "start it (`bench broker start`) or check --bootstrap-servers and --kafka-config") from None


def recreate(client: AdminClient, topics: Iterable[str], workload: Workload, compacted: Iterable[str] = (), *,
             registry: "Registry", force: bool = False) -> None:
    """Delete ``topics`` if they exist, then create them with the workload's layout and record
    them in the ``registry``. An existing topic that bench did not create stops everything first
    (one BrokerError naming them) unless ``force``."""
    topics = list(topics)
    existing = set(client.list_topics(timeout=TIMEOUT_S).topics)
    doomed = [t for t in topics if t in existing]
    if not force:
        # By topic id, not name: a topic deleted and made again by someone else is theirs.
        ours, current = registry.created(), _topic_ids(client, doomed)
        foreign = [t for t in doomed if ours.get(t) is None or ours[t] != current.get(t)]
        if foreign:
            many = len(foreign) > 1
            them = "them" if many else "it"
            raise BrokerError(f"topic{'s' if many else ''} {', '.join(foreign)} already exist{'' if many else 's'} and "
                              f"bench did not create {them}: pass --recreate-topics to delete and recreate {them} "
                              f"(records are lost), or use another cluster")
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
    registry.record_created(_topic_ids(client, topics))


def _topic_ids(client: AdminClient, names: list[str]) -> dict[str, str]:
    """Each topic's id (Kafka gives a topic made again under the same name a new one)."""
    if not names:
        return {}
    ids = {}
    for name, future in client.describe_topics(TopicCollection(list(names))).items():
        try:
            ids[name] = str(future.result(timeout=TIMEOUT_S).topic_id)
        except KafkaException:
            pass  # gone meanwhile: nothing to protect
    return ids


def _wait(client: AdminClient, done, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if done(set(client.list_topics(timeout=TIMEOUT_S).topics)):
            return
        time.sleep(0.2)
    raise BrokerError(f"topics not {what} within {TIMEOUT_S:.0f}s")


REGISTRY = "bench-topics"
CLAIM = "claim"
CLAIM_MARGIN_S = 120.0  # past a run's planned end (drain, audit) before its claim lapses


class Registry:
    """The cluster's ``bench-topics``: topic name -> the run that created it, and the claim."""

    def __init__(self, client: AdminClient, conf: Mapping[str, object], run_id: str) -> None:
        self.conf = dict(conf)  # an admin client's: servers and security settings only
        self.run_id = run_id
        if REGISTRY not in client.list_topics(timeout=TIMEOUT_S).topics:
            future = client.create_topics([NewTopic(REGISTRY, 1, -1, config={"cleanup.policy": "compact"})],
                                          operation_timeout=TIMEOUT_S)[REGISTRY]
            try:
                future.result()
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in exc.args[0].name():  # another run made it meanwhile
                    raise BrokerError(f"cannot create topic {REGISTRY}: {exc.args[0].str()}") from None
            _wait(client, lambda present: REGISTRY in present, "created")

    def records(self) -> list[tuple[str, dict | None, int]]:
        """Every record in log order: (key, value or None for a tombstone, timestamp ms)."""
        consumer = Consumer({**self.conf, "group.id": f"bench-registry-{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False, "enable.partition.eof": True})
        try:
            _, high = watermarks(consumer, TopicPartition(REGISTRY, 0), time.monotonic() + TIMEOUT_S)
            consumer.assign([TopicPartition(REGISTRY, 0, OFFSET_BEGINNING)])
            out, position, deadline = [], 0, time.monotonic() + TIMEOUT_S
            while position < high and time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is None or msg.error() is not None:
                    continue
                position = msg.offset() + 1
                value = json.loads(msg.value()) if msg.value() else None
                out.append((msg.key().decode(), value, msg.timestamp()[1]))
            return out
        finally:
            consumer.close()

    def created(self) -> dict[str, str | None]:
        """Topic name -> the id of the topic bench created under that name."""
        latest: dict[str, dict | None] = {}
        for key, value, _ in self.records():
            latest[key] = value
        return {key: value.get("id") for key, value in latest.items() if key != CLAIM and value is not None}

    def record_created(self, ids: Mapping[str, str]) -> None:
        self.write({topic: {"run": self.run_id, "id": topic_id} for topic, topic_id in ids.items()})

    def write(self, records: Mapping[str, dict | None]) -> None:
        """Write ``records`` (key -> value, None for a tombstone) and wait until they are stored."""
        # A producer per write, not one kept: a run writes here a few times, and a kept one would
        # go on trying to reach a broker that has since stopped.
        producer = Producer({**self.conf, "acks": "all"})
        for key, value in records.items():
            producer.produce(REGISTRY, None if value is None else json.dumps(value).encode(), key.encode())
        if producer.flush(TIMEOUT_S):
            raise BrokerError(f"cannot write to topic {REGISTRY} within {TIMEOUT_S:.0f}s")

    def holder(self) -> dict | None:
        """The claim in force now: claims in log order, each taking the cluster only when none is
        held (released, or lapsed when it was written), so of two runs claiming at once the first
        written wins, and both agree on it."""
        held: dict | None = None
        now_ms = time.time() * 1000
        for key, value, written_ms in self.records():
            if key != CLAIM or value is None:
                continue
            if held is not None and value["run"] == held["run"] and value.get("released"):
                held = None
            elif held is None or held["until_s"] * 1000 <= written_ms or _dead_here(held):
                held = None if value.get("released") else value
        if held is None or held["until_s"] * 1000 <= now_ms or _dead_here(held):
            return None
        return held

    @contextmanager
    def claim(self, seconds: float) -> Iterator[None]:
        """Hold the cluster for this run for at most ``seconds`` (plus a margin), or raise BrokerError."""
        self._refuse_if_held()
        self.write({CLAIM: {"run": self.run_id, "pid": os.getpid(), "host": socket.gethostname(),
                            "until_s": time.time() + seconds + CLAIM_MARGIN_S}})
        self._refuse_if_held()
        try:
            yield
        finally:
            self.write({CLAIM: {"run": self.run_id, "released": True}})

    def _refuse_if_held(self) -> None:
        held = self.holder()
        if held is not None and held["run"] != self.run_id:
            until = time.strftime("%H:%M:%S", time.localtime(held["until_s"]))
            raise BrokerError(f"another bench run ({held['run']}, pid {held['pid']} on {held['host']}) is using this "
                              f"cluster until {until} at the latest: wait for it to finish, or use another cluster")


def _dead_here(claim: dict) -> bool:
    """The claim's run was on this machine and its process is gone (killed): no need to wait for
    the claim to lapse."""
    if claim.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(claim.get("pid")), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, TypeError, ValueError):
        return False  # someone else's process, or a claim without a pid: assume it lives
    return False
