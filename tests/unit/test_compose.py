"""docker-compose.yml cannot run here (no Docker engine); check what it promises."""
from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())


def test_default_service_is_one_kraft_broker_on_9092():
    defaults = {n: s for n, s in COMPOSE["services"].items() if not s.get("profiles")}
    assert list(defaults) == ["kafka"]
    kafka = defaults["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    assert "9092:9092" in kafka["ports"]
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "localhost:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_three_broker_profile_serves_localhost_9092_too():
    profiled = {n: s for n, s in COMPOSE["services"].items() if "three" in s.get("profiles", [])}
    assert len(profiled) == 3
    ports = sorted(p for s in profiled.values() for p in s["ports"])
    assert "9092:9092" in ports
    voters = {s["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for s in profiled.values()}
    assert len(voters) == 1 and voters.pop().count("@") == 3
    for s in profiled.values():
        assert s["environment"]["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
