"""`bench sweep`: a tiny sweep on the real broker, and the knee rule on made-up points."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.results import series
from bench.results.files import read_summary
from bench.run.sweep import PLOT, SWEEP, Point, knee


def point(rate, valid=True, p99=10.0):
    return Point("orchestration", rate, rate, valid, None if valid else "x", 1.0, p99, p99, True, f"p-{rate}")


def test_the_knee_is_the_highest_valid_rate_under_the_bound():
    points = [point(400, p99=600.0), point(100), point(200, p99=400.0), point(800, valid=False, p99=20.0)]
    assert knee(points, 500.0) == 200
    assert knee(points, 300.0) == 100
    assert knee([point(100, valid=False)], 500.0) is None


def test_a_pass_above_a_miss_is_not_the_knee():
    assert knee([point(100), point(200, p99=600.0), point(400, p99=50.0)], 500.0) == 100


@pytest.mark.parametrize("args, message", [
    (["--rates", "100,abc"], "--rates"),
    (["--rates", "0"], "--rates"),
    (["--rates", "100", "--pattern", "saga"], "unknown pattern"),
])
def test_bad_input_exits_2_before_running(tmp_path, args, message):
    result = CliRunner().invoke(cli, ["sweep", *args, "--output", str(tmp_path / "s")])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "s").exists()


@pytest.mark.broker
def test_a_tiny_sweep_writes_points_a_plot_and_a_knee(bootstrap_servers, tmp_path):
    out = tmp_path / "sweep"
    result = CliRunner().invoke(cli, [
        "sweep", "--pattern", "orchestration", "--rates", "100,50", "--duration", "4s", "--warmup", "1s",
        "--bootstrap-servers", bootstrap_servers, "--output", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads((out / SWEEP).read_text())
    assert document["schema_version"] == 2 and document["repeat"] == 1
    points = [Point(**p) for p in document["points"]]
    # (a rate whose one run missed would be run again: only the first pass is certain)
    assert [(p.pattern, p.rate_target_per_s) for p in points if p.run == 1] == [("orchestration", 50),
                                                                               ("orchestration", 100)]
    for p in points:
        summary = read_summary(out / p.directory)
        assert summary["rate_target_per_s"] == p.rate_target_per_s and p.clean
    assert series.read(out / "orchestration-50")  # each rate is a series, as `bench compare` reads one
    assert document["latency_bound_p99_ms"] == 500.0
    expected = knee(points, 500.0)
    assert expected is not None  # at 50-100 orders/s one core keeps up with room to spare
    assert document["knees_per_s"] == {"orchestration": expected}
    assert f"knee orchestration: {expected:g}/s" in result.output
    assert (out / PLOT).read_bytes().startswith(b"\x89PNG")
