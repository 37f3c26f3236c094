"""Client properties files and settings: one clear line for what librdkafka cannot take, no secret echoed."""
from __future__ import annotations

import pytest

from bench import clients, results
from bench.workload import Workload


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
                                          ("ssl.truststore.location", "ssl.ca.location")])
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


@pytest.mark.parametrize("key", ["sasl.oauthbearer.assertion.private.key.passphrase",
                                 "sasl.oauthbearer.assertion.private.key.pem", "sasl.oauthbearer.config",
                                 "sasl.oauthbearer.extensions", "sasl.jaas.config"])
def test_oauth_and_jaas_settings_are_redacted(key):
    assert results.redact({key: "s3cret", "linger.ms": 5}) == {key: results.REDACTED, "linger.ms": 5}
