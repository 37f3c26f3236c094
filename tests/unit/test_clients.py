"""Client properties files and settings: one clear line for what librdkafka cannot take, no secret echoed."""
from __future__ import annotations

import pytest

from bench.kafka import clients, secrets
from bench.flow.workload import Workload


def test_properties_file_is_read_java_style(tmp_path):
    path = tmp_path / "client.properties"
    path.write_text("# comment\n! also a comment\nsecurity.protocol=SASL_SSL\nsasl.mechanism : PLAIN\n\n")
    assert clients.read_properties(path) == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}


def test_a_line_without_a_key_is_named_but_never_echoed(tmp_path):
    path = tmp_path / "client.properties"
    path.write_text("security.protocol=SASL_SSL\nhunter2-the-password\n")
    with pytest.raises(clients.ConfigError) as err:
        clients.read_properties(path)
    assert str(err.value) == f"{path}:2: expected key=value"


@pytest.mark.parametrize("key, instead", [("sasl.jaas.config", "sasl.username and sasl.password"),
                                          ("ssl.truststore.location", "ssl.ca.location"),
                                          ("ssl.keystore.type", "PKCS#12")])
def test_java_only_properties_say_what_librdkafka_takes(tmp_path, key, instead):
    path = tmp_path / "client.properties"
    path.write_text(f"{key}=secret-value\n")
    with pytest.raises(clients.ConfigError) as err:
        clients.read_properties(path)
    assert instead in str(err.value) and "secret-value" not in str(err.value) and "\n" not in str(err.value)


def test_a_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "client.properties"
    path.write_bytes(b"sasl.password=\xff\xfe\n")
    with pytest.raises(clients.ConfigError, match="not UTF-8"):
        clients.read_properties(path)


def test_librdkafka_checks_the_settings_before_any_broker_is_touched():
    clients.check(Workload(name="w"), {}, "w.yaml")  # the defaults are fine
    with pytest.raises(clients.ConfigError) as err:
        clients.check(Workload(name="w", client={"no.such.property": 1}), {}, "w.yaml")
    assert str(err.value).startswith("w.yaml: librdkafka rejects the producer settings") and "no.such.property" in str(err.value)
    with pytest.raises(clients.ConfigError, match="consumer settings"):
        clients.check(Workload(name="w"), {"fetch.wait.max.ms": "soon"}, "client.properties")


JAAS = "org.apache.kafka.common.security.{module} required \\\n  username=\"alice\" \\\n  password=\"{password}\";\n"


def test_a_jaas_plain_line_becomes_librdkafkas_username_and_password(tmp_path):
    path = tmp_path / "client.properties"
    # Continued over three lines, as Kafka's docs write it; a quote inside the password is \\" in the file.
    path.write_text("security.protocol=SASL_SSL\nsasl.jaas.config=" + JAAS.format(module="plain.PlainLoginModule",
                                                                                password='s3\\\\"cr=et'))
    assert clients.read_properties(path) == {"security.protocol": "SASL_SSL", "sasl.username": "alice",
                                             "sasl.password": 's3"cr=et', "sasl.mechanism": "PLAIN"}


def test_a_jaas_scram_line_needs_the_mechanism_java_needs_too(tmp_path):
    path = tmp_path / "client.properties"
    line = "sasl.jaas.config=" + JAAS.format(module="scram.ScramLoginModule", password="pw-secret")
    path.write_text("sasl.mechanism=SCRAM-SHA-512\n" + line)
    assert clients.read_properties(path)["sasl.password"] == "pw-secret"
    path.write_text(line)
    with pytest.raises(clients.ConfigError, match="needs sasl.mechanism=SCRAM-SHA-256 or SCRAM-SHA-512") as err:
        clients.read_properties(path)
    assert "pw-secret" not in str(err.value)


@pytest.mark.parametrize("line, message", [
    ("org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;", "uses OAuthBearerLoginModule"),
    ('org.apache.kafka.common.security.plain.PlainLoginModule required password="pw-secret";', "has no username"),
    ("pw-secret", "is not one JAAS login line"),
    ('org.apache.kafka.common.security.plain.PlainLoginModule required username="a" password="pw-secret" "x";',
     "an option bench cannot read"),
])
def test_a_jaas_line_bench_cannot_translate_is_one_line_without_its_secret(tmp_path, line, message):
    path = tmp_path / "client.properties"
    path.write_text(f"sasl.jaas.config={line}\n")
    with pytest.raises(clients.ConfigError, match=message) as err:
        clients.read_properties(path)
    assert "pw-secret" not in str(err.value) and "\n" not in str(err.value)


def test_librdkafkas_complaint_is_scrubbed_of_secret_values():
    with pytest.raises(clients.ConfigError) as err:
        clients.check(Workload(name="w"), {"sasl.oauthbearer.method": "hunter2-method"}, "client.properties")
    assert "hunter2" not in str(err.value) and secrets.REDACTED in str(err.value)


def test_client_settings_are_written_by_an_allow_list():
    conf = {"linger.ms": 5, "bootstrap.servers": "b:9092", "sasl.password": "p", "sasl.username": "alice",
            "ssl.key.pem": "k", "some.future.property": "x", "SECURITY.PROTOCOL": "SSL"}
    assert secrets.client(conf) == {"linger.ms": 5, "bootstrap.servers": "b:9092", "sasl.password": secrets.REDACTED,
                                    "sasl.username": secrets.REDACTED, "ssl.key.pem": secrets.REDACTED,
                                    "some.future.property": secrets.REDACTED, "SECURITY.PROTOCOL": "SSL"}
