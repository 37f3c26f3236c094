"""The seed tutorial's commands, verbatim, against our broker."""
from __future__ import annotations

import subprocess
import time
import uuid

import pytest
from confluent_kafka.admin import AdminClient

pytestmark = pytest.mark.broker

EVENT = '{"orderId": "12345", "status": "created"}'


def delete_topic(server: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": server})
    if topic not in admin.list_topics(timeout=10).topics:
        return
    admin.delete_topics([topic])[topic].result(timeout=30)
    deadline = time.monotonic() + 30
    while topic in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.2)


def run(cmd: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd.split(), input=stdin, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("topic", ["order-created", "order-processor"])
def test_tutorial_commands_print_what_the_tutorial_says(bootstrap_servers, topic):
    server = bootstrap_servers.split(",")[0]
    if server != "localhost:9092":
        # The tutorial's commands name localhost:9092; on another cluster use a fresh topic name.
        topic = f"{topic}-{uuid.uuid4().hex[:8]}"
    delete_topic(server, topic)  # an earlier `bench run` in this session may have made it
    create = run(f"kafka-topics --create --topic {topic} --bootstrap-server {server} --partitions 1 --replication-factor 1")
    assert create.returncode == 0, create.stderr
    assert create.stdout.strip() == f"Created topic {topic}."

    produce = run(f"kafka-console-producer --topic {topic} --bootstrap-server {server}", stdin=EVENT + "\n")
    assert produce.returncode == 0, produce.stderr
    assert produce.stdout.strip() == ""

    consume = run(f"kafka-console-consumer --topic {topic} --bootstrap-server {server} --from-beginning --max-messages 1")
    assert consume.returncode == 0, consume.stderr
    assert consume.stdout.strip() == EVENT
    assert "Processed a total of 1 messages" in consume.stderr
    delete_topic(server, topic)  # it is the user's, not bench's: a later `bench run` would refuse to delete it
