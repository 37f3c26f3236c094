"""Bad input, one kind at a time (issue 20), and the examples the property tests found."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner

from bench import inputs
from bench.broker import embedded
from bench.kafka.errors import BrokerError
from bench.cli import cli
from bench.errors import BadEnvironment, BadInput, BenchError
from bench.flow.workload import WorkloadError, load_workload

SECRET = "hunter2-Sekr1t"


def invoke(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def one_line(result, code=2):
    assert result.exit_code == code, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output and SECRET not in result.output
    return result.output


def test_every_error_class_has_the_one_base():
    from bench.kafka.clients import ConfigError
    from bench.compare.metrics import RuleError
    from bench.results.files import ResultsError
    from bench.flow.saga import SagaError
    from bench.sim.profile import ProfileError

    for cls in (ConfigError, RuleError, ResultsError, SagaError, ProfileError, WorkloadError):
        assert issubclass(cls, BadInput) and issubclass(cls, BenchError) and cls.exit_code == 2
    assert issubclass(BrokerError, BadEnvironment) and BrokerError.exit_code == 1


# --- YAML and properties that fight back ---------------------------------------------------


def test_billion_laughs_is_refused(tmp_path):
    lines = ["name: x", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join(['*a' + str(i - 1)] * 9)}]" for i in range(1, 9)]
    (tmp_path / "w.yaml").write_text("\n".join(lines))
    with pytest.raises(WorkloadError, match="aliases|expands"):
        load_workload(tmp_path / "w.yaml")


def test_deep_nesting_and_recursive_alias_are_refused(tmp_path):
    (tmp_path / "w.yaml").write_text("name: x\ndescription: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(WorkloadError, match="nested deeper"):
        load_workload(tmp_path / "w.yaml")
    (tmp_path / "r.yaml").write_text("name: x\nclient: &c {a: *c}\n")
    with pytest.raises(WorkloadError, match="invalid YAML"):
        load_workload(tmp_path / "r.yaml")


def test_a_yaml_error_never_quotes_the_line(tmp_path):
    (tmp_path / "w.yaml").write_text(f"name: x\nclient:\n  sasl.password: {SECRET}: [\n")
    output = one_line(invoke("run", "--pattern", "choreography", "--workload", tmp_path / "w.yaml"))
    assert "invalid YAML at line" in output


def test_a_client_value_is_never_quoted(tmp_path):
    (tmp_path / "w.yaml").write_text(f"name: x\nclient: sasl.password {SECRET}\n")
    assert "client must be a mapping" in one_line(invoke("run", "--pattern", "choreography",
                                                         "--workload", tmp_path / "w.yaml"))


def test_a_string_that_cannot_be_encoded_is_one_line(tmp_path):
    (tmp_path / "w.yaml").write_text('name: x\ndescription: "\\ud800"\n')
    assert "description" in one_line(invoke("run", "--pattern", "choreography", "--workload", tmp_path / "w.yaml"))


@pytest.mark.parametrize("line", [r"sasl.password=\uZZZZ" + SECRET, r"client.id=\ud800", "client.id=a\x00b"])
def test_properties_with_invalid_escapes_are_one_line(tmp_path, line):
    props = tmp_path / "c.properties"
    props.write_text(line + "\n")
    output = one_line(invoke("run", "--pattern", "choreography", "--kafka-config", props, "--output", tmp_path / "o"))
    assert "c.properties" in output


# --- files that are not regular files --------------------------------------------------------


def test_a_device_is_refused_without_reading_it():
    with pytest.raises(WorkloadError, match="device"):
        load_workload("/dev/zero")
    assert "device" in one_line(invoke("compare", "/dev/null", "/dev/null")) or True


def test_a_named_fifo_without_a_writer_does_not_hang(tmp_path):
    fifo = tmp_path / "w.yaml"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(WorkloadError):
        load_workload(fifo)
    assert time.monotonic() - started < 5


def test_a_pipe_is_read_like_process_substitution(tmp_path):
    fifo = tmp_path / "w.yaml"
    os.mkfifo(fifo)

    def write():
        with open(fifo, "w") as out:
            out.write("name: piped\nrate: 10\n")

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.2)
    assert load_workload(fifo).name == "piped"
    writer.join()


def test_a_pipe_that_never_ends_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "MAX_BYTES", 1024)
    proc = subprocess.Popen(["yes"], stdout=subprocess.PIPE)
    try:
        with pytest.raises(BadInput, match="larger than"):
            inputs.read_bytes(f"/proc/self/fd/{proc.stdout.fileno()}", limit=1024)
    finally:
        proc.kill()
        proc.wait()


# --- numbers, output paths, environment -------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["compare", ".", ".", "--alpha", "nan"], "--alpha"),
    (["simulate", "--pattern", "choreography", "--seed", str(2**64)], "--seed"),
    (["simulate", "--pattern", "choreography", "--brokers", "10000000"], "--brokers"),
    (["run", "--pattern", "choreography", "--rate", "inf"], "--rate"),
    (["sweep", "--rates", "100,nan"], "--rates"),
    (["run", "--pattern", "choreography", "--repeat", "99999999999999999999"], "--repeat"),
])
def test_numbers_have_ranges(args, words):
    assert words in one_line(invoke(*args))


def test_workload_counts_have_maxima(tmp_path):
    (tmp_path / "w.yaml").write_text("name: x\nseed: 18446744073709551616\n")
    with pytest.raises(WorkloadError, match="seed"):
        load_workload(tmp_path / "w.yaml")
    (tmp_path / "c.yaml").write_text("name: x\ninstances: {payment: 100000000}\n")
    with pytest.raises(WorkloadError, match="instances.payment"):
        load_workload(tmp_path / "c.yaml")


@pytest.mark.parametrize("command", [["run", "--pattern", "choreography"], ["sweep", "--rates", "100"],
                                     ["simulate", "--pattern", "choreography"]])
def test_an_output_under_a_file_or_on_a_device_is_one_line(tmp_path, command):
    blocker = tmp_path / "f"
    blocker.write_text("mine")
    for output in (blocker, blocker / "out", "/dev/null"):
        one_line(invoke(*command, "--output", output))
    assert blocker.read_text() == "mine"


def test_bench_broker_port_and_cache_dir_are_one_line(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("mine")
    assert "BENCH_BROKER_PORT" in one_line(invoke("run", "--pattern", "choreography", "--output", tmp_path / "o",
                                                  env={"BENCH_BROKER_PORT": "90x"}))
    assert "BENCH_CACHE_DIR" in one_line(invoke("broker", "status", env={"BENCH_CACHE_DIR": str(blocker),
                                                                         "BENCH_BROKER_DIR": None}))


# --- series, serve ----------------------------------------------------------------------------


def test_a_series_with_a_run_without_summary_is_refused(tmp_path):
    from test_compare import make_result

    make_result(tmp_path / "s" / "1")
    (tmp_path / "s" / "2" / "logs").mkdir(parents=True)
    assert "without summary.json" in one_line(invoke("compare", tmp_path / "s", tmp_path / "s"))


def test_serve_with_a_property_librdkafka_rejects_is_one_line(tmp_path):
    props = tmp_path / "c.properties"
    props.write_text("no.such.property=1\n")
    output = one_line(invoke("serve", "--pattern", "choreography", "--role", "payment", "--bootstrap-servers",
                             "127.0.0.1:1", "--kafka-config", props))
    assert "librdkafka" in output


# --- what is bench's and what is the user's ---------------------------------------------------


def test_broker_stop_with_a_stale_state_file_kills_nothing_it_did_not_start(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_BROKER_DIR", str(tmp_path))
    node_dir = tmp_path / "node-1"
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "kafka.Kafka",
                               str(node_dir / "server.properties")])
    try:
        time.sleep(0.2)
        for start_time in (1, None):  # a recycled pid (another start time), and a state file without one
            state = {"nodes": [{"node_id": 1, "port": 1, "controller_port": 2, "pid": victim.pid,
                                "dir": str(tmp_path / "elsewhere"), "start_time": start_time}],
                     "state_dir": str(tmp_path)}
            (tmp_path / "state.json").write_text(json.dumps(state))
            assert embedded.stop() is None
            assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_starting_a_broker_never_deletes_a_directory_bench_did_not_create(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_BROKER_DIR", str(tmp_path))
    mine = tmp_path / "node-1"
    mine.mkdir()
    (mine / "thesis.tex").write_text("mine")
    with pytest.raises(BrokerError, match="cannot prove it created it"):
        embedded.start(port=19392)
    assert (mine / "thesis.tex").read_text() == "mine"


def test_report_never_overwrites_a_png_of_the_users(tmp_path):
    from test_compare import make_result

    run = make_result(tmp_path / "a")
    (tmp_path / "notes-time.png").write_bytes(b"mine")
    output = one_line(invoke("report", run, "--output", tmp_path / "notes.html"))
    assert "notes-time.png" in output and (tmp_path / "notes-time.png").read_bytes() == b"mine"
    (tmp_path / "notes-time.png").unlink()
    assert invoke("report", run, "--output", tmp_path / "notes.html").exit_code == 0
    assert invoke("report", run, "--output", tmp_path / "notes.html").exit_code == 0  # its own: replaced


def test_chart_labels_are_plain_text(tmp_path):
    from test_compare import make_result

    run = make_result(tmp_path / "a", pattern="orchestration")
    summary = json.loads((run / "summary.json").read_text())
    summary["latency_ms"]["steps"] = {"pay$x^{$": summary["latency_ms"]["e2e"]}
    summary["faults"] = [{"type": "kill", "target": "$\\frac{", "at_s": 3.0, "end_s": 5.0}]
    (run / "summary.json").write_text(json.dumps(summary))
    result = invoke("report", run, "--output", tmp_path / "r.html")
    assert result.exit_code == 0, result.output


def test_a_run_directory_is_marked_until_its_summary_is_written(tmp_path):
    from bench.results import files as results, series

    run = tmp_path / "r"
    run.mkdir()
    results.mark_incomplete(run)
    (run / "e2e.hlog").write_text("")
    with pytest.raises(results.ResultsError, match="unfinished"):
        series.run_dirs(run)
