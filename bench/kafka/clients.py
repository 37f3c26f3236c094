"""Kafka client settings shared by every process of a run, and the properties file they come from.

One function builds each kind of client config, so every role of both patterns
(and the load generator) gets the same settings; only group ids differ.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import javaproperties

from bench import inputs
from bench.errors import BadInput
from bench.kafka import secrets
from bench.flow.workload import Workload

# librdkafka warns when a consumer is given producer-only properties and vice
# versa; the workload's `client:` section is one mapping for both, so split it.
PRODUCER_ONLY = frozenset({
    "linger.ms", "queue.buffering.max.ms", "batch.size", "batch.num.messages", "compression.type",
    "compression.codec", "compression.level", "acks", "request.required.acks", "enable.idempotence",
    "queue.buffering.max.messages", "queue.buffering.max.kbytes", "message.timeout.ms", "delivery.timeout.ms",
    "retries", "message.send.max.retries", "retry.backoff.ms", "transactional.id", "transaction.timeout.ms",
    "partitioner", "sticky.partitioning.linger.ms", "request.timeout.ms", "max.in.flight.requests.per.connection",
    "max.in.flight",
})
CONSUMER_ONLY = frozenset({
    "fetch.wait.max.ms", "fetch.min.bytes", "fetch.max.bytes", "max.partition.fetch.bytes",
    "fetch.message.max.bytes", "queued.min.messages", "queued.max.messages.kbytes", "session.timeout.ms",
    "heartbeat.interval.ms", "max.poll.interval.ms", "auto.offset.reset", "isolation.level",
    "enable.auto.commit", "auto.commit.interval.ms", "partition.assignment.strategy", "group.protocol",
    "fetch.queue.backoff.ms", "group.instance.id", "enable.auto.offset.store", "check.crcs",
})


COMMIT_INTERVAL_MS = 500  # background commit of offsets the runtime stored after acknowledgement


class ConfigError(BadInput):
    """A client properties file that cannot be used; the message names file and line."""


def read_properties(path: str | Path) -> dict[str, str]:
    """Read a Java-style properties file (as Kafka's tools take) for librdkafka.

    Parsed as Java parses it (javaproperties). A JAAS PLAIN or SCRAM login line becomes
    librdkafka's ``sasl.username`` / ``sasl.password``; other Java-only properties are refused
    with what librdkafka takes instead. No error message quotes a value: it may be a secret."""
    text = inputs.read_text(path, "client properties file", ConfigError)
    props: dict[str, str] = {}
    jaas: tuple[str, tuple[str, ...]] | None = None  # (where, the login module's mechanisms)
    line = 1
    for element in _elements(text, path):
        number, line = line, line + element.source.count("\n")
        if not isinstance(element, javaproperties.KeyValue):
            continue
        key, value, where = element.key, element.value, f"{path}:{number}"
        for part, name in ((key, "its key"), (value, "its value")):
            if "\x00" in part or not inputs._encodable(part):
                raise ConfigError(f"{where}: {name} holds a character that is not text (a \\u escape of a lone "
                                  "surrogate, or NUL)")
        if not value and not _SEPARATOR.search(element.source):
            # The line is not echoed: it may be a credential that lost its key.
            raise ConfigError(f"{where}: expected key=value")
        if key == "sasl.jaas.config":
            credentials, mechanisms = jaas_credentials(value, where)
            jaas = (where, mechanisms)
            for name, translated in credentials.items():
                if name in props:
                    raise ConfigError(f"{where}: sasl.jaas.config and {name} are both set: keep one")
                props[name] = translated
            continue
        if key in JAVA_ONLY:
            raise ConfigError(f"{where}: {key} is a Java client property; librdkafka takes {JAVA_ONLY[key]}")
        if key in ("sasl.username", "sasl.password") and key in props:
            raise ConfigError(f"{where}: sasl.jaas.config and {key} are both set: keep one")
        props[key] = value
    if jaas:
        where, mechanisms = jaas
        mechanism = props.get("sasl.mechanism", props.get("sasl.mechanisms"))
        if mechanism is None and len(mechanisms) == 1:
            props["sasl.mechanism"] = mechanisms[0]
        elif mechanism not in mechanisms:
            raise ConfigError(f"{where}: the JAAS login module needs sasl.mechanism={' or '.join(mechanisms)}"
                              + (f", not {mechanism}" if mechanism else ""))
    return props


def _elements(text: str, path):
    """javaproperties' elements; an invalid escape is one line naming the line, never its text."""
    lines = text.splitlines()
    parsed = javaproperties.parse(text)
    line = 1
    while True:
        try:
            element = next(parsed)
        except StopIteration:
            return
        except (ValueError, UnicodeError) as exc:  # InvalidUEscapeError, a \\u escape cut short
            kind = "an invalid \\u escape" if "escape" in type(exc).__name__.lower() or "\\u" in str(exc) else \
                "a line that cannot be parsed"
            raise ConfigError(f"{path}:{min(line, max(len(lines), 1))}: {kind}") from None
        line += element.source.count("\n")
        yield element


_SEPARATOR = re.compile(r"(?<!\\)[=:\s]\s*\S|(?<!\\)[=:]")


# Properties of Kafka's Java clients that librdkafka does not have, and what it takes instead.
JAVA_ONLY = {
    "ssl.truststore.location": "ssl.ca.location (a PEM file; convert a JKS truststore with keytool -exportcert -rfc)",
    "ssl.truststore.password": "ssl.ca.location (a PEM file, no password)",
    "ssl.truststore.type": "ssl.ca.location (a PEM file)",
    "ssl.truststore.certificates": "ssl.ca.pem",
    "ssl.keystore.type": "ssl.keystore.location (PKCS#12 only) or ssl.certificate.location + ssl.key.location (PEM)",
    "ssl.keystore.key": "ssl.key.pem",
    "ssl.keystore.certificate.chain": "ssl.certificate.pem",
    "ssl.protocol": "nothing: librdkafka negotiates the TLS version (ssl.cipher.suites narrows it)",
    "sasl.login.callback.handler.class": "sasl.oauthbearer.method=oidc with sasl.oauthbearer.* settings",
    "sasl.client.callback.handler.class": "sasl.username and sasl.password, or sasl.oauthbearer.* settings",
    "key.serializer": "nothing: bench serializes itself",
    "value.serializer": "nothing: bench serializes itself",
    "key.deserializer": "nothing: bench deserializes itself",
    "value.deserializer": "nothing: bench deserializes itself",
}

# JAAS login modules with a librdkafka equivalent: class -> the SASL mechanisms it serves.
LOGIN_MODULES = {
    "org.apache.kafka.common.security.plain.PlainLoginModule": ("PLAIN",),
    "org.apache.kafka.common.security.scram.ScramLoginModule": ("SCRAM-SHA-256", "SCRAM-SHA-512"),
}
_JAAS = re.compile(r"\s*(?P<module>[\w.$]+)\s+(?P<flag>required|requisite|sufficient|optional)\b(?P<options>.*?);?\s*$",
                   re.DOTALL)
_OPTION = re.compile(r'\s*(?P<key>[\w.-]+)\s*=\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s;"]+))')


def jaas_credentials(value: str, where: str) -> tuple[dict[str, str], tuple[str, ...]]:
    """``sasl.username`` and ``sasl.password`` from a JAAS PLAIN or SCRAM login line, and the
    SASL mechanisms that module serves; any other login module, or a line without both, is a
    ConfigError (that never quotes the line)."""
    entry = _JAAS.fullmatch(value)
    if not entry:
        raise ConfigError(f"{where}: sasl.jaas.config is not one JAAS login line (<LoginModule> required "
                          'username="..." password="...";): write sasl.username and sasl.password instead')
    module = entry["module"]
    if module not in LOGIN_MODULES:
        raise ConfigError(f"{where}: sasl.jaas.config uses {module.rsplit('.', 1)[-1]}, which bench cannot translate "
                          "for librdkafka: set librdkafka's own sasl.* properties instead (PLAIN and SCRAM are translated)")
    options, rest = {}, entry["options"]
    while rest.strip():
        option = _OPTION.match(rest)
        if not option:
            raise ConfigError(f"{where}: sasl.jaas.config has an option bench cannot read: write sasl.username and "
                              "sasl.password instead")
        text = option["quoted"] if option["quoted"] is not None else option["bare"]
        options[option["key"]] = re.sub(r"\\(.)", r"\1", text)
        rest = rest[option.end():]
    missing = [name for name in ("username", "password") if name not in options]
    if missing:
        raise ConfigError(f"{where}: sasl.jaas.config has no {' or '.join(missing)}: librdkafka needs both")
    return {"sasl.username": options["username"], "sasl.password": options["password"]}, LOGIN_MODULES[module]


def check(workload: Workload, extra: Mapping[str, str], source: str) -> None:
    """Have librdkafka read every producer and consumer property before anything touches a
    broker: a property it does not know or a value it rejects is one ConfigError line."""
    from confluent_kafka import Consumer, KafkaException, Producer

    nowhere = "127.0.0.1:1"  # clients are built, never used: their failing connection attempts are not logged
    silent = {"logger": silent_logger("check")}
    for kind, build in (("producer", lambda: Producer({**producer_config(nowhere, workload, extra), **silent})),
                        ("consumer", lambda: Consumer({**consumer_config(nowhere, workload, "bench-check", extra),
                                                       **silent}))):
        try:
            client = build()
        except (KafkaException, ValueError, TypeError) as exc:
            detail = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
            detail = secrets.scrub(detail, secrets.values({**workload.client, **extra}))  # it may quote a value
            raise ConfigError(f"{source}: librdkafka rejects the {kind} settings: {detail}") from None
        if kind == "consumer":
            client.close()


def silent_logger(name: str) -> logging.Logger:
    """For clients whose complaints are expected and handled: a probe, a check, a warm-up."""
    logger = logging.getLogger(f"bench.kafka.silent.{name}")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
    return logger


def _quiet_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(f"bench.kafka.{name}")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False
    return logger


def _common(bootstrap_servers: str, workload: Workload, extra: Mapping[str, str], drop: frozenset[str]) -> dict:
    merged = {**{k: v for k, v in workload.client.items()}, **extra}
    conf = {k: v for k, v in merged.items() if k not in drop}
    conf["bootstrap.servers"] = bootstrap_servers
    return conf


def producer_config(bootstrap_servers: str, workload: Workload, extra: Mapping[str, str] = {},
                    transactional_id: str | None = None) -> dict:
    conf = _common(bootstrap_servers, workload, extra, CONSUMER_ONLY)
    conf.setdefault("acks", workload.acks)
    # Idempotence keeps per-partition order under retries; it needs acks=all.
    conf.setdefault("enable.idempotence", str(conf["acks"]) in ("all", "-1"))
    if transactional_id:
        conf["transactional.id"] = transactional_id
    conf["logger"] = _quiet_logger("producer")
    return conf


def consumer_config(bootstrap_servers: str, workload: Workload, group_id: str, extra: Mapping[str, str] = {},
                    store_acknowledged: bool = False) -> dict:
    """``store_acknowledged``: the service runtime stores each offset itself once the outputs
    it caused are acknowledged, and librdkafka commits stored offsets in the background."""
    conf = _common(bootstrap_servers, workload, extra, PRODUCER_ONLY)
    conf.update({
        "group.id": group_id,
        "enable.auto.commit": store_acknowledged,
        "enable.auto.offset.store": False,
        "auto.commit.interval.ms": COMMIT_INTERVAL_MS,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed" if workload.delivery == "exactly-once" else "read_uncommitted",
    })
    conf["logger"] = _quiet_logger("consumer")
    return conf


def admin_config(bootstrap_servers: str, extra: Mapping[str, str] = {}) -> dict:
    conf = {k: v for k, v in extra.items() if k not in PRODUCER_ONLY | CONSUMER_ONLY}
    conf["bootstrap.servers"] = bootstrap_servers
    conf["logger"] = _quiet_logger("admin")
    return conf
