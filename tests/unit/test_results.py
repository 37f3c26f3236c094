import csv
import json
import os
from datetime import datetime, timezone

import numpy as np
import pytest

from bench.results import files as results
from bench.results.files import (
    SCHEMA_VERSION,
    ResultsError,
    TimeseriesWriter,
    environment,
    read_summary,
    result_dir,
    write_summary,
)

from bench.kafka.secrets import REDACTED, redact  # noqa: E402

NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


def test_result_dir_name_and_never_reused(tmp_path):
    first = result_dir("orchestration", 5000, base=tmp_path, now=NOW)
    assert first == tmp_path / "20250304T050607Z-orchestration-5000"
    assert first.is_dir()
    second = result_dir("orchestration", 5000.0, base=tmp_path, now=NOW)
    assert second == tmp_path / "20250304T050607Z-orchestration-5000-2"
    assert result_dir("choreography", 12.5, base=tmp_path / "new", now=NOW).name == "20250304T050607Z-choreography-12.5"


def test_result_dir_stamp_is_utc(tmp_path):
    from datetime import timedelta

    local = NOW.astimezone(timezone(timedelta(hours=2)))
    assert result_dir("p", 1, base=tmp_path, now=local).name.startswith("20250304T050607Z")


def test_environment_describes_the_machine():
    env = environment(kafka_version="4.1.1")
    assert env["kafka"] == "4.1.1"
    for key in ("bench_version", "python", "confluent_kafka", "librdkafka", "hostname", "platform", "cpu_count"):
        assert env[key], key
    assert env["git"] is None or set(env["git"]) == {"commit", "dirty"}
    json.dumps(env)


def test_redaction_is_recursive_and_case_insensitive():
    config = {
        "bootstrap.servers": "b:9092",
        "SASL.Password": "p",
        "sasl.username": "alice",
        "client": {"ssl.key.pem": "k", "ssl.truststore.password": "t", "linger.ms": 2, "unknown.prop": "u"},
        "registries": [{"basic.auth.user.info": "u:p", "url": "http://r"}],
        "oauth": {"sasl.oauthbearer.client.secret": "s", "refresh_token": "r", "MyApiSecret": "m"},
        "empty_secret": None,
    }
    assert redact(config) == {
        "bootstrap.servers": "b:9092",
        "SASL.Password": REDACTED,
        "sasl.username": REDACTED,
        "client": {"ssl.key.pem": REDACTED, "ssl.truststore.password": REDACTED, "linger.ms": 2, "unknown.prop": REDACTED},
        "registries": [{"basic.auth.user.info": REDACTED, "url": "http://r"}],
        "oauth": {"sasl.oauthbearer.client.secret": REDACTED, "refresh_token": REDACTED, "MyApiSecret": REDACTED},
        "empty_secret": REDACTED,
    }
    assert config["SASL.Password"] == "p"  # the input is not changed


def test_write_summary_redacts_sets_version_and_reads_back(tmp_path):
    path = write_summary(tmp_path, {
        "config": {"sasl.password": "hunter2", "acks": "all"},
        "workload": {"client": {"ssl.key.password": "k"}},
        "latency_ms": {"p99": np.float64(1.5), "count": np.int64(3)},
        "schema_version": 0,
    })
    assert path == tmp_path / "summary.json"
    text = path.read_text()
    assert "hunter2" not in text and '"k"' not in text
    assert text.lstrip().startswith('{\n  "schema_version": 1')
    summary = read_summary(tmp_path)
    assert summary["schema_version"] == SCHEMA_VERSION
    assert summary["config"] == {"sasl.password": REDACTED, "acks": "all"}
    assert summary["latency_ms"] == {"p99": 1.5, "count": 3}


def test_write_summary_is_atomic(tmp_path, monkeypatch):
    write_summary(tmp_path, {"run": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_summary(tmp_path, {"run": 2})
    assert read_summary(tmp_path)["run"] == 1  # the old file is intact
    assert os.listdir(tmp_path) == ["summary.json"]  # and no temp file is left behind


def test_unserialisable_summary_leaves_no_file(tmp_path):
    with pytest.raises(TypeError):
        write_summary(tmp_path, {"bad": object()})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "summary.json: missing"),
        (b"{not json", "summary.json: not valid JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'{"run": 1}', "schema_version must be a positive integer, got None"),
        (b'{"schema_version": 99}', "schema_version 99 is newer than this bench supports (1); upgrade bench"),
    ],
)
def test_read_summary_errors_are_one_clear_line(tmp_path, content, message):
    if content is not None:
        (tmp_path / "summary.json").write_bytes(content)
    with pytest.raises(ResultsError) as caught:
        read_summary(tmp_path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_read_summary_missing_dir(tmp_path):
    with pytest.raises(ResultsError, match="no such result directory"):
        read_summary(tmp_path / "nope")


def test_older_schema_is_upgraded(tmp_path, monkeypatch):
    (tmp_path / "summary.json").write_text(json.dumps({"schema_version": 1, "p99": 2.0}))
    monkeypatch.setattr(results, "SCHEMA_VERSION", 2)

    def nest_p99(summary):
        return {"schema_version": 1, "latency_ms": {"p99": summary["p99"]}}

    monkeypatch.setattr(results, "UPGRADES", {1: nest_p99})
    assert read_summary(tmp_path) == {"schema_version": 2, "latency_ms": {"p99": 2.0}}


def test_missing_upgrade_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "summary.json").write_text(json.dumps({"schema_version": 1}))
    monkeypatch.setattr(results, "SCHEMA_VERSION", 2)
    with pytest.raises(ResultsError, match="no upgrade from schema_version 1"):
        read_summary(tmp_path)


def test_timeseries_rows_are_on_disk_before_close(tmp_path):
    path = tmp_path / "timeseries.csv"
    writer = TimeseriesWriter(path)
    writer.write_row(1.0, 1000, 990, 10, 5, 12.5)
    writer.write_row(2.0004, 1000, 1001, 9, None, None)
    with path.open(newline="") as f:  # read while the writer is still open, as after a crash
        rows = list(csv.reader(f))
    assert rows == [
        ["t_s", "offered", "finished", "in_flight", "backlog", "p99_ms"],
        ["1.0", "1000", "990", "10", "5", "12.5"],
        ["2.0", "1000", "1001", "9", "", ""],
    ]
    writer.close()

