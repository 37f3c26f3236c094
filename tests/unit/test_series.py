"""Series on disk (runs of one configuration) and the one summary verdict."""
from __future__ import annotations

import pytest

from bench.results import series, summary
from bench.results.files import ResultsError, write_summary


def run_dir(path, pattern="orchestration", rate=300, **fields):
    path.mkdir(parents=True)
    write_summary(path, {
        "mode": "real", "pattern": pattern, "rate_target_per_s": rate, "rate_achieved_per_s": rate,
        "valid": True, "interrupted": False,
        "orders": {"started": 10, "completed": 10, "cancelled": 0, "lost": 0, "stuck": 0, "duplicates": 0,
                   "multiple_terminal": 0, "compensated_early": 0, "inconsistent": 0},
        "latency_ms": {"e2e": {"p50": 1.0, "p99": 2.0}}, **fields})
    return path


def test_a_run_is_a_series_of_one(tmp_path):
    run = run_dir(tmp_path / "run")
    (run / "logs").mkdir()
    assert series.run_dirs(run) == [run]


def test_repeat_layout_reads_in_the_order_written(tmp_path):
    for k in (1, 2, 10, 3):
        run_dir(tmp_path / "s" / str(k))
    assert [p.name for p in series.run_dirs(tmp_path / "s")] == ["1", "2", "3", "10"]
    assert series.members(tmp_path / "s", 3) == [tmp_path / "s" / "1", tmp_path / "s" / "2", tmp_path / "s" / "3"]


def test_a_shell_loop_writing_two_sides_gives_two_series(tmp_path):
    # for k in 1 2; do bench run ... --output S/A/$k; venv-b/bin/bench run ... --output S/B/$k; done
    for k in (1, 2):
        run_dir(tmp_path / "S" / "A" / str(k))
        run_dir(tmp_path / "S" / "B" / str(k))
    (tmp_path / "S" / "A" / ".hidden").mkdir()
    assert len(series.read(tmp_path / "S" / "A")) == len(series.read(tmp_path / "S" / "B")) == 2


@pytest.mark.parametrize("case, message", [
    ("nothing", "no such result directory or series"),
    ("empty", "neither a run"),
    ("half-written", "a run without summary.json"),
    ("mixed pattern", "not a series of one configuration: 1 has pattern"),
    ("mixed rate", "has rate_target_per_s 300"),
    ("wrong type", "orders.lost must be a whole number"),
])
def test_what_is_not_a_series_is_one_line(tmp_path, case, message):
    s = tmp_path / "s"
    if case != "nothing":
        s.mkdir()
    if case == "half-written":
        run_dir(s / "1")
        (s / "2").mkdir()
        (s / "2" / "timeseries.csv").write_text("t_s\n")
    elif case == "mixed pattern":
        run_dir(s / "1")
        run_dir(s / "2", pattern="choreography")
    elif case == "mixed rate":
        run_dir(s / "1")
        run_dir(s / "2", rate=500)
    elif case == "wrong type":
        run_dir(s / "1", orders={"started": 1, "lost": "none", "stuck": 0})
    with pytest.raises(ResultsError, match=message) as err:
        series.read(s)
    assert "\n" not in str(err.value)


def test_summary_check_names_the_field():
    good = {"mode": "real", "pattern": "p", "valid": True, "rate_target_per_s": 1, "rate_achieved_per_s": 1.0,
            "orders": {"started": 1, "lost": 0, "stuck": 0}, "latency_ms": {"e2e": {"p50": None}}}
    assert summary.check(good) is None
    assert summary.check({**good, "valid": "yes"}) == "valid must be true or false, got text"  # never the value: it may be a secret
    assert summary.check({**good, "rate_target_per_s": True}).startswith("rate_target_per_s must be a number")
    assert summary.check({**good, "latency_ms": {}}) == "latency_ms.e2e is missing"
    assert summary.check({**good, "latency_ms": {"e2e": {"p99": [1]}}}).startswith("latency_ms.e2e.p99 must be a number or null")


def test_one_verdict_for_every_reader():
    orders = {"started": 10, "lost": 0, "stuck": 0, "duplicates": 0, "multiple_terminal": 0, "inconsistent": 0}
    fine = {"valid": True, "interrupted": False, "orders": orders}
    assert summary.clean(fine) and summary.problems(fine) == [] and summary.exit_code(fine) == 0
    twice = {**fine, "orders": {**orders, "multiple_terminal": 1}}  # an order that ended twice is not clean
    assert not summary.clean(twice) and summary.exit_code(twice) == summary.EXIT_AUDIT
    assert summary.problems(twice) == ["audit: 1 multiple terminal"]
    invalid = {**fine, "valid": False, "invalid_reason": "backlog kept growing"}
    assert summary.exit_code(invalid) == summary.EXIT_INVALID
    assert summary.problems(invalid) == ["invalid: backlog kept growing"]
    assert summary.exit_code({**invalid, "interrupted": True}) == summary.EXIT_INTERRUPTED
    assert summary.worst_exit_code([0, 3, 1]) == 1 and summary.worst_exit_code([0, 0]) == 0
    assert summary.worst_exit_code([3, 130, 1]) == 130


def test_sweep_points_use_the_same_verdict():
    from bench.run.sweep import Point

    s = {"pattern": "p", "rate_target_per_s": 1, "rate_achieved_per_s": 1, "valid": True,
         "latency_ms": {"e2e": {"p50": 1, "p99": 2, "p999": 3}},
         "orders": {"lost": 0, "stuck": 0, "duplicates": 0, "multiple_terminal": 1, "inconsistent": 0}}
    assert Point.of(s, "d").clean is False  # what made `bench run` exit 1 counted clean in a sweep before


@pytest.mark.parametrize("command", [["run", "--pattern", "orchestration", "--repeat", "2"],
                                     ["sweep", "--pattern", "choreography,orchestration", "--rates", "100"]])
def test_bad_input_to_a_series_or_sweep_is_one_line_before_any_broker(tmp_path, monkeypatch, command):
    from click.testing import CliRunner

    from bench.cli import cli

    monkeypatch.setenv("BENCH_BROKER_DIR", str(tmp_path / "no-broker"))  # none running: one would be started
    props = tmp_path / "client.properties"
    props.write_text("ssl.truststore.location=/etc/kafka/truststore.jks\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [*command, "--kafka-config", str(props), "--output", str(out)])
    assert result.exit_code == 2, result.output
    assert "ssl.truststore.location is a Java client property" in result.output
    assert not out.exists() and not (tmp_path / "no-broker").exists()
