"""Kafka's own command-line tools, run from the same jars as the embedded broker.

Installed as console scripts (``kafka-topics`` and friends) so the tutorial's
commands work verbatim. Each replaces the Python process with the JVM, so
stdin, stdout, signals and the exit code are the tool's own.
"""
from __future__ import annotations

import os
import sys

from bench.broker import dist
from bench.kafka.errors import BrokerError

TOOLS_LOG4J2 = """\
Configuration:
  Appenders:
    Console:
      name: stderr
      target: SYSTEM_ERR
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: stderr
"""

MAIN_CLASSES = {
    "kafka-topics": "org.apache.kafka.tools.TopicCommand",
    "kafka-console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "kafka-console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "kafka-consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "kafka-producer-perf-test": "org.apache.kafka.tools.ProducerPerformance",
    "kafka-consumer-perf-test": "org.apache.kafka.tools.ConsumerPerformance",
    "kafka-e2e-latency": "org.apache.kafka.tools.EndToEndLatency",
}


def command(tool: str, args: list[str]) -> list[str]:
    """The JVM command line that runs ``tool`` with ``args`` (installs Kafka's jars first if needed)."""
    dist.install()
    java = dist.java_executable()
    log_config = dist.dist_dir() / "tools-log4j2.yaml"
    if not log_config.exists():
        log_config.write_text(TOOLS_LOG4J2)
    # Short-lived admin tools start faster on the C1 compiler; the perf tools need C2.
    jit = [] if "perf-test" in tool or "latency" in tool else ["-XX:TieredStopAtLevel=1"]
    return [java, "-Xmx256m", "-XX:+UseSerialGC", *jit,
            f"-Dlog4j2.configurationFile={log_config}", "-cp", dist.classpath(), MAIN_CLASSES[tool], *args]


def _exec(tool: str) -> None:
    try:
        argv = command(tool, sys.argv[1:])
    except BrokerError as exc:
        print(f"{tool}: {exc}", file=sys.stderr)
        sys.exit(1)
    os.execv(argv[0], argv)


def kafka_topics() -> None: _exec("kafka-topics")
def kafka_console_producer() -> None: _exec("kafka-console-producer")
def kafka_console_consumer() -> None: _exec("kafka-console-consumer")
def kafka_consumer_groups() -> None: _exec("kafka-consumer-groups")
def kafka_producer_perf_test() -> None: _exec("kafka-producer-perf-test")
def kafka_consumer_perf_test() -> None: _exec("kafka-consumer-perf-test")
def kafka_e2e_latency() -> None: _exec("kafka-e2e-latency")
