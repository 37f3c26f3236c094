"""`bench sweep`'s knee on made-up runs: a fake `run` stands in for the broker, so the rule that
decides which rates run again, the knee and its spread are tested without Kafka."""
from __future__ import annotations

import contextlib
import json

import pytest
from click.testing import CliRunner

from bench import patterns
from bench.cli import cli
from bench.flow.workload import load_workload
from bench.results import series
from bench.results.files import write_summary
from bench.run import sweep as sweep_module
from bench.run.run import RunOutcome
from bench.run.sweep import SWEEP, Point, SweepRequest, held, knee, next_run, render_table, sweep

BOUND = 500.0
RATES = (8000, 10000, 12000, 16000, 20000)


def summary(rate, valid=True, p99=60.0):
    finished = rate if valid else rate * 0.99
    return {"mode": "real", "pattern": "orchestration", "rate_target_per_s": rate, "rate_offered_per_s": rate,
            "rate_achieved_per_s": finished, "valid": valid, "interrupted": False,
            "invalid_reason": None if valid else f"finished {finished:.0f} orders/s, below 99% of the {rate}/s offered",
            "orders": {"started": 100, "completed": 100, "cancelled": 0, "lost": 0, "stuck": 0, "duplicates": 0,
                       "multiple_terminal": 0, "compensated_early": 0, "inconsistent": 0},
            "latency_ms": {"e2e": {"p50": 20.0, "p99": p99, "p999": p99 * 2}}}


class Machine:
    """A fake `bench.run.run.run`: every rate up to ``capacity`` holds and every rate above misses
    clearly, except the (rate, run number) in ``flips``, whose run goes the other way (a stall in
    its last seconds leaves a held rate 1% short; a quiet moment lets a rate above capacity pass)."""

    def __init__(self, capacity, flips=()):
        self.capacity, self.flips, self.ran = capacity, set(flips), []

    def __call__(self, request, echo):
        rate = request.workload.rate_per_s
        self.ran.append(rate)
        holds = (rate <= self.capacity) != ((rate, self.ran.count(rate)) in self.flips)
        s = summary(rate) if holds else summary(rate, valid=False, p99=BOUND * (1.2 if rate <= self.capacity else 8))
        request.output.mkdir(parents=True)  # as the real run makes it
        write_summary(request.output, s)
        return RunOutcome(request.output, s, 0)


@pytest.fixture
def machine(monkeypatch):
    def install(capacity, flips=()):
        fake = Machine(capacity, flips)
        monkeypatch.setattr(sweep_module, "run", fake)
        monkeypatch.setattr(sweep_module, "one_broker", lambda request, echo: contextlib.nullcontext())
        return fake
    return install


def sweep_of(tmp_path, repeat=1, stop_early=False, lines=None):
    request = SweepRequest((patterns.get("orchestration"),), RATES, load_workload(None), "127.0.0.1:9",
                           output=tmp_path / "sweep", stop_early=stop_early, repeat=repeat)
    return sweep(request, echo=(lines.append if lines is not None else lambda line: None))


def point(rate, within=True, run=1):
    return Point("orchestration", rate, rate, within, None if within else "x", 1.0, 10.0, 10.0, True, f"p-{rate}", run)


@pytest.mark.parametrize("runs, verdict", [
    ("", None), ("h", True), ("m", None), ("mm", False), ("mh", None), ("hm", None), ("mhh", True),
    ("hmm", False), ("hmmh", None), ("hhmm", None), ("hhhm", True),
])
def test_a_rate_holds_by_the_majority_of_its_runs_and_one_miss_alone_decides_nothing(runs, verdict):
    assert held([point(100, c == "h", k) for k, c in enumerate(runs, 1)], BOUND) is verdict


def test_the_knee_of_single_runs_is_unchanged_and_of_series_counts_majorities():
    single = [point(100), point(200), point(400, within=False)]
    assert knee(single, BOUND) == 200
    assert knee([*single, point(400, True, 2), point(400, True, 3)], BOUND) == 400
    assert knee([*single, point(200, False, 2), point(200, False, 3)], BOUND) == 100


def test_a_marginal_stall_is_run_again_and_does_not_decide_the_knee(tmp_path, machine):
    # Observed: orchestration at 12,000/s finished 0.2% short after a stall in its last two
    # seconds, and one run made the knee 10,000/s.
    fake = machine(12000, flips={(12000, 1)})
    outcome = sweep_of(tmp_path)
    assert fake.ran == [8000, 10000, 12000, 16000, 20000, 12000, 12000, 16000]
    assert outcome.knees == {"orchestration": 12000}
    stalled = outcome.points[2]
    assert (stalled.rate_target_per_s, stalled.valid) == (12000, False)  # the run still says it did not hold
    assert outcome.passes == {"orchestration": [10000, 12000, 12000]}
    assert ("knee orchestration: 12000/s  (valid with p99 < 500 ms in 2 of 3 runs; 16000/s in 0 of 2 runs; "
            "10000..12000/s over 3 passes)") in render_table(outcome)


def test_stop_early_is_not_fooled_by_one_marginal_miss(tmp_path, machine):
    fake = machine(12000, flips={(12000, 1)})
    lines = []
    outcome = sweep_of(tmp_path, stop_early=True, lines=lines)
    # Before: stopped at 12,000/s's one run, "knee orchestration: 10000/s" (or none from the lowest).
    assert fake.ran == [8000, 10000, 12000, 12000, 12000, 16000, 16000]
    assert outcome.knees == {"orchestration": 12000}
    assert lines[-1] == "sweep: orchestration did not hold 16000/s in 0 of 2 runs; skipped 20000/s"


def test_stop_early_stops_once_two_runs_of_a_rate_missed(tmp_path, machine):
    fake = machine(10000)
    sweep_of(tmp_path, stop_early=True)
    assert fake.ran == [8000, 10000, 12000, 12000]


def test_repeat_makes_a_series_either_side_of_the_knee_and_reports_its_spread(tmp_path, machine):
    fake = machine(12000, flips={(12000, 2)})
    outcome = sweep_of(tmp_path, repeat=3, stop_early=True)
    assert fake.ran == [8000, 10000, 12000, 16000, 16000, 16000, 12000, 12000]
    assert outcome.knees == {"orchestration": 12000}
    assert outcome.passes == {"orchestration": [12000, 10000, 12000]}
    line = render_table(outcome).splitlines()[-1]
    assert line.startswith("knee orchestration: 12000/s  (valid with p99 < 500 ms in 2 of 3 runs; 16000/s in 0 of 3")
    assert line.endswith("10000..12000/s over 3 passes)")
    # each rate is a series, as `bench run --repeat` writes one: `bench compare` reads it
    assert [run.name for run, _ in series.read(outcome.directory / "orchestration-12000")] == ["1", "2", "3"]
    assert [run.name for run, _ in series.read(outcome.directory / "orchestration-8000")] == ["1"]


def test_a_knee_whose_series_misses_moves_down_and_its_new_bracket_is_repeated(tmp_path, machine):
    fake = machine(10000, flips={(12000, 1)})  # 12,000/s passed once, in a quiet moment
    outcome = sweep_of(tmp_path, repeat=3, stop_early=True)
    assert fake.ran == [8000, 10000, 12000, 16000, 16000, 16000, 12000, 12000, 10000, 10000]
    assert outcome.knees == {"orchestration": 10000}


def test_next_run_says_why():
    bound = BOUND
    assert next_run([100, 200], [], bound) == (100, "first pass")
    assert next_run([100, 200], [point(100, False), point(200)], bound) == (100, "a lone miss is run again")
    disagree = [point(100, False), point(100, True, 2), point(200)]
    assert next_run([100, 200], disagree, bound) == (100, "its runs disagree")
    assert next_run([100, 200], [point(100), point(200)], bound, repeat=2) == (200, "next to the knee: run 2 of 2")
    assert next_run([100, 200], [point(100), point(200)], bound) is None


def test_sweep_json_records_the_runs_and_still_reads_version_1_points(tmp_path, machine):
    machine(12000, flips={(12000, 1)})
    outcome = sweep_of(tmp_path, repeat=1, stop_early=True)
    document = json.loads((outcome.directory / SWEEP).read_text())
    assert document["schema_version"] == 2 and document["repeat"] == 1 and document["stop_early"] is True
    assert document["knees_per_s"] == {"orchestration": 12000}
    assert document["knee_passes_per_s"] == {"orchestration": [10000, 12000, 12000]}
    points = [Point(**p) for p in document["points"]]
    assert [(p.directory, p.run) for p in points if p.rate_target_per_s == 12000] == [
        ("orchestration-12000/1", 1), ("orchestration-12000/2", 2), ("orchestration-12000/3", 3)]
    version_1 = {k: v for k, v in document["points"][0].items() if k != "run"}
    assert Point(**version_1).run == 1  # a version 1 sweep.json: one run per rate


def test_bench_sweep_repeat_end_to_end(tmp_path, machine):
    machine(12000, flips={(12000, 2)})
    result = CliRunner().invoke(cli, ["sweep", "--pattern", "orchestration", "--rates", "10000,12000,16000",
                                      "--repeat", "3", "--stop-early", "--bootstrap-servers", "127.0.0.1:9",
                                      "--output", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "knee orchestration: 12000/s  (valid with p99 < 500 ms in 2 of 3 runs" in result.output
    assert "(next to the knee: run 3 of 3)" in result.output


@pytest.mark.parametrize("value, message", [
    ("0", "--repeat must be from 1 to 1000, got 0"),
    ("-1", "--repeat must be from 1 to 1000, got -1"),
    ("three", "--repeat: expected a whole number"),
])
def test_a_bad_repeat_is_one_line_and_exit_2(tmp_path, machine, value, message):
    fake = machine(12000)
    result = CliRunner().invoke(cli, ["sweep", "--rates", "100", "--repeat", value, "--output", str(tmp_path / "s")])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and message in result.output
    assert "Traceback" not in result.output
    assert fake.ran == [] and not (tmp_path / "s").exists()


def test_a_whole_sweep_is_not_a_series_but_each_rate_is(tmp_path, machine):
    machine(12000)
    outcome = sweep_of(tmp_path, stop_early=True)
    result = CliRunner().invoke(cli, ["compare", str(outcome.directory), str(outcome.directory)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "a sweep, not a run or a series: compare one rate's series, e.g. " in result.output
    assert f"{outcome.directory / 'orchestration-8000'}" in result.output
    result = CliRunner().invoke(cli, ["compare", str(outcome.directory / "orchestration-8000"),
                                      str(outcome.directory / "orchestration-12000")])
    assert result.exit_code == 0, result.output
