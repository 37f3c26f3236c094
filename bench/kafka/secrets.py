"""What bench may write of the client settings: an allow-list, everything else redacted.

Client properties (a workload's ``client:`` section, a ``--kafka-config`` file, the
producer and consumer settings a run records) keep their values only when the property
is on :data:`HARMLESS`, a list of settings that are tuning, addresses and protocol
names; any other value (a password, a key, a token, a JAAS line, and any property this
list does not know yet) becomes ``***REDACTED***``. Outside client settings, keys that
look like credentials are redacted too. Messages that may carry a value (librdkafka's
complaints) are scrubbed of every secret value before they are shown.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "***REDACTED***"

# librdkafka properties whose values are settings, never credentials.
HARMLESS = frozenset({
    # where and how to connect (names of mechanisms and protocols, not their secrets)
    "bootstrap.servers", "metadata.broker.list", "client.id", "client.rack", "security.protocol",
    "sasl.mechanism", "sasl.mechanisms", "ssl.endpoint.identification.algorithm",
    "enable.ssl.certificate.verification", "broker.address.family", "broker.address.ttl", "api.version.request",
    "api.version.fallback.ms", "broker.version.fallback", "socket.timeout.ms", "socket.keepalive.enable",
    "socket.nagle.disable", "socket.send.buffer.bytes", "socket.receive.buffer.bytes", "socket.connection.setup.timeout.ms",
    "connections.max.idle.ms", "reconnect.backoff.ms", "reconnect.backoff.max.ms", "retry.backoff.ms",
    "retry.backoff.max.ms", "topic.metadata.refresh.interval.ms", "metadata.max.age.ms",
    "topic.metadata.refresh.fast.interval.ms", "topic.metadata.propagation.max.ms", "allow.auto.create.topics",
    "message.max.bytes", "receive.message.max.bytes", "message.copy.max.bytes", "max.in.flight",
    "max.in.flight.requests.per.connection", "statistics.interval.ms", "log_level", "log.queue", "debug",
    "log.connection.close", "enable.metrics.push", "client.dns.lookup",
    # producer
    "acks", "request.required.acks", "linger.ms", "queue.buffering.max.ms", "batch.size", "batch.num.messages",
    "compression.type", "compression.codec", "compression.level", "enable.idempotence",
    "enable.gapless.guarantee", "queue.buffering.max.messages", "queue.buffering.max.kbytes",
    "queue.buffering.backpressure.threshold", "message.timeout.ms", "delivery.timeout.ms", "retries",
    "message.send.max.retries", "transactional.id", "transaction.timeout.ms", "partitioner",
    "sticky.partitioning.linger.ms", "request.timeout.ms", "delivery.report.only.error",
    # consumer
    "group.id", "group.instance.id", "group.protocol", "group.remote.assignor", "partition.assignment.strategy",
    "session.timeout.ms", "heartbeat.interval.ms", "coordinator.query.interval.ms", "max.poll.interval.ms",
    "enable.auto.commit", "auto.commit.interval.ms", "enable.auto.offset.store", "auto.offset.reset",
    "isolation.level", "fetch.wait.max.ms", "fetch.min.bytes", "fetch.max.bytes", "max.partition.fetch.bytes",
    "fetch.message.max.bytes", "fetch.error.backoff.ms", "fetch.queue.backoff.ms", "queued.min.messages",
    "queued.max.messages.kbytes", "enable.partition.eof", "check.crcs",
})

# Where bench's own documents hold client settings: the values of these keys are property maps.
CLIENT_SECTIONS = frozenset({"client", "producer", "consumer", "admin", "kafka_config"})

# Outside client settings, keys that look like credentials (lower-case globs).
SECRET_KEYS = ("*password*", "*secret*", "*token*", "*passphrase*", "*private.key*", "*jaas*", "*credential*",
               "ssl.key.pem", "basic.auth.user.info", "sasl.oauthbearer.config", "sasl.oauthbearer.extensions",
               "sasl.username")


def harmless(key: Any) -> bool:
    return isinstance(key, str) and key.lower() in HARMLESS


def client(conf: Mapping[str, Any]) -> dict[str, Any]:
    """A client property map as bench may write it: values of properties not on the allow-list redacted."""
    return {key: value if harmless(key) else REDACTED for key, value in conf.items()}


def _looks_secret(key: Any) -> bool:
    return isinstance(key, str) and any(fnmatch.fnmatchcase(key.lower(), pattern) for pattern in SECRET_KEYS)


def redact(value: Any) -> Any:
    """A copy of ``value`` fit to write: client settings (under :data:`CLIENT_SECTIONS`) by the
    allow-list, every other key that looks like a credential redacted, in nested mappings and lists."""
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if key in CLIENT_SECTIONS and isinstance(item, Mapping):
                out[key] = client(item)
            elif _looks_secret(key):
                out[key] = REDACTED
            else:
                out[key] = redact(item)
        return out
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    return value


def values(conf: Mapping[str, Any]) -> list[str]:
    """The secret values of a client property map (those :func:`client` redacts), longest first."""
    found = {str(v) for k, v in conf.items() if not harmless(k) and v not in (None, "") and len(str(v)) >= 3}
    return sorted(found, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value in it replaced by ``***REDACTED***``."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text
