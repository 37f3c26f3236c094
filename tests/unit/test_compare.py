import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.compare import (
    METRICS,
    Rule,
    RuleError,
    _u_distribution,
    compare,
    mann_whitney_p,
    metric,
    parse_rules,
    render,
)
from bench.recording import merged, new_histogram, summary_ms, write_intervals
from bench.results import SCHEMA_VERSION, ResultsError, write_summary

T0 = 1_700_000_000.25
WARMUP_S, DURATION_S, RATE = 2, 10, 300


def make_result(path, *, scale=1.0, seed=1, spike_interval=None, lost=0, messages=5.0):
    """A result directory with lognormal latencies (~20 ms median) in 1 s intervals;
    ``scale`` multiplies every latency, ``spike_interval`` makes one interval 20x slower."""
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    intervals = []
    for second in range(WARMUP_S, WARMUP_S + DURATION_S):
        factor = scale * (20 if second == spike_interval else 1)
        histogram = new_histogram()
        for value in rng.lognormal(math.log(20_000), 0.5, RATE) * factor:
            histogram.record_value(int(value))
        intervals.append((second, second + 1, histogram))
    write_intervals(path / "e2e.hlog", intervals, T0, name="e2e")
    write_intervals(path / "step-payment.hlog", intervals, T0, name="payment")
    rows = ["t_s,offered,finished,in_flight,lag,p99_ms"]
    rows += [f"{t},{RATE},{RATE},5,0,{summary_ms(h)['p99']}" for t, _, h in [(s + 1, 0, h) for s, _, h in intervals]]
    (path / "timeseries.csv").write_text("\n".join(rows) + "\n")
    e2e = summary_ms(merged([h for _, _, h in intervals]))
    write_summary(path, {
        "mode": "real", "pattern": "orchestration", "rate_target_per_s": RATE, "rate_offered_per_s": RATE,
        "rate_achieved_per_s": RATE, "duration_s": DURATION_S, "warmup_s": WARMUP_S, "valid": True,
        "invalid_reason": None,
        "orders": {"started": RATE * 12, "completed": RATE * 12 - lost, "cancelled": 0, "lost": lost,
                   "stuck": 0, "duplicates": 0, "inconsistent": 0},
        "latency_ms": {"e2e": e2e, "steps": {"payment": e2e}},
        "messages_per_order": messages, "bytes_per_order": 600.0,
        "timeline": {"start_wall_s": T0, "measure_start_s": T0 + WARMUP_S, "measure_end_s": T0 + WARMUP_S + DURATION_S},
    })
    return path


@pytest.fixture
def runs(tmp_path):
    return {
        "base": make_result(tmp_path / "base"),
        "same": make_result(tmp_path / "same"),
        "rerun": make_result(tmp_path / "rerun", seed=2),
        "slower": make_result(tmp_path / "slower", scale=1.3, seed=3),
        "spike": make_result(tmp_path / "spike", spike_interval=5),
        "lossy": make_result(tmp_path / "lossy", lost=2),
    }


# --- rules ------------------------------------------------------------------------


def test_rules_parse_into_small_objects():
    p99, throughput, lost, p50_ms = parse_rules("p99:+10%, throughput:-5%,lost:+0,p50:+2.5ms")
    assert (p99.metric.name, p99.threshold, p99.relative) == ("p99", pytest.approx(0.10), True)
    assert (throughput.metric.name, throughput.threshold, throughput.metric.higher_is_worse) == (
        "throughput", pytest.approx(0.05), False)
    assert (lost.threshold, lost.relative) == (0.0, False)
    assert (p50_ms.threshold, p50_ms.relative, p50_ms.metric.unit) == (2.5, False, "ms")
    assert Rule.parse("p99:10%").threshold == pytest.approx(0.10)  # no sign: the worse way
    assert parse_rules("") == ()


def test_metric_registry_knows_latency_steps_and_counts():
    for name in ("p50", "p90", "p99", "p999", "max", "e2e.p99", "slip.p99", "throughput",
                 "messages_per_order", "bytes_per_order", "lost", "stuck", "duplicates"):
        assert name in METRICS
    step = metric("step.payment.p99")
    assert (step.unit, step.higher_is_worse) == ("ms", True)


@pytest.mark.parametrize("text, message", [
    ("p98:+10%", "unknown metric 'p98'"),
    ("p99+10%", "bad rule"),
    ("throughput:+5%", "throughput gets worse when it falls"),
    ("p99:-10%", "p99 gets worse when it rises"),
    ("p99:+5s", "unit 's'"),
    ("step.payment:+5%", "unknown metric"),
])
def test_bad_rules_say_why_in_one_line(text, message):
    with pytest.raises(RuleError, match=message) as err:
        Rule.parse(text)
    assert "\n" not in str(err.value)


# --- statistics -----------------------------------------------------------------------


def test_u_distribution_counts_every_ordering():
    assert _u_distribution(3, 3).sum() == math.comb(6, 3)
    assert list(_u_distribution(2, 2)) == [1, 1, 2, 1, 1]


def test_mann_whitney_exact_and_approximate():
    assert mann_whitney_p([4, 5, 6], [1, 2, 3]) == pytest.approx(1 / 20)  # the most extreme of 20 orderings
    assert mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(1.0)
    rng = np.random.default_rng(7)
    a, b = rng.normal(0, 1, 40), rng.normal(0, 1, 40)
    exact = mann_whitney_p(a, b)
    approx = mann_whitney_p(np.round(a, 1), np.round(b, 1))  # ties: the normal approximation
    assert abs(exact - approx) < 0.1
    assert mann_whitney_p(a + 1.0, b) < 0.01
    assert mann_whitney_p([5, 5, 5], [5, 5, 5]) == 1.0


# --- judging ---------------------------------------------------------------------------


def test_identical_runs_are_no_regression(runs):
    c = compare([runs["base"], runs["same"]], parse_rules("p99:+10%,p50:+10%,throughput:-5%"))
    assert not c.regressions
    assert all(v.change == 0 and v.p_value is not None and v.p_value > 0.4 for v in c.verdicts)


def test_a_rerun_from_the_same_distribution_is_no_regression(runs):
    c = compare([runs["base"], runs["rerun"]], parse_rules("p99:+10%,p50:+10%,max:+10%,step.payment.p99:+10%"))
    assert not c.regressions


def test_a_shifted_distribution_is_a_regression(runs):
    c = compare([runs["base"], runs["slower"]], parse_rules("p50:+10%,p99:+10%,step.payment.p50:+10%"))
    assert [v.rule.text for v in c.regressions] == ["p50:+10%", "p99:+10%", "step.payment.p50:+10%"]
    for v in c.verdicts:
        assert v.change == pytest.approx(0.3, abs=0.1)
        assert v.p_value < 0.001
        assert v.intervals == (DURATION_S, DURATION_S)


def test_past_threshold_but_not_significant_is_no_regression(runs):
    # One slow second lifts the run's p99 far past 10%, but nine of ten seconds are as before.
    (verdict,) = compare([runs["base"], runs["spike"]], parse_rules("p99:+10%")).verdicts
    assert verdict.past_threshold and verdict.change > 1.0
    assert not verdict.significant and not verdict.regression


def test_a_smaller_change_than_the_threshold_is_no_regression(runs):
    (verdict,) = compare([runs["base"], runs["slower"]], parse_rules("p50:+50%")).verdicts
    assert verdict.significant and not verdict.past_threshold and not verdict.regression


def test_counts_are_judged_by_threshold_alone(runs):
    c = compare([runs["base"], runs["lossy"]], parse_rules("lost:+0,messages_per_order:+1%"))
    lost, messages = c.verdicts
    assert lost.regression and lost.p_value is None and lost.change == math.inf
    assert not messages.regression


def test_every_candidate_is_judged_against_the_first(runs):
    c = compare([runs["base"], runs["same"], runs["slower"]], parse_rules("p50:+10%"))
    assert [(v.candidate, v.regression) for v in c.verdicts] == [(1, False), (2, True)]


def test_side_by_side_rows_hold_relative_changes(runs):
    c = compare([runs["base"], runs["slower"]])
    rows = {row.name: row for row in c.rows}
    assert rows["pattern"].values == ("orchestration", "orchestration")
    assert rows["e2e p50"].changes[1] == pytest.approx(0.3, abs=0.1)
    assert rows["step.payment.p99"].values[0] == rows["e2e p99"].values[0]
    assert {"lost", "stuck", "duplicates", "inconsistent", "messages/order", "bytes/order"} <= set(rows)


def test_formats(runs):
    c = compare([runs["base"], runs["slower"]], parse_rules("p50:+10%"))
    text = render(c, "text")
    assert "REGRESSION" in text and "Mann-Whitney U over 10 vs 10 intervals" in text
    markdown = render(c, "markdown")
    assert "| metric | unit | A | B | vs A |" in markdown and "❌" in markdown
    document = json.loads(render(c, "json"))
    assert document["regression"] is True
    assert document["rules"][0]["metric"] == "p50" and document["rules"][0]["regression"] is True
    assert [run["label"] for run in document["runs"]] == ["A", "B"]


def test_unreadable_hlog_is_a_results_error(runs):
    (runs["same"] / "e2e.hlog").write_text("#[Histogram log format version 1.2]\n0.000,1.000,1.0,garbage!!\n")
    with pytest.raises(ResultsError, match="e2e.hlog"):
        compare([runs["base"], runs["same"]], parse_rules("p99:+10%"))


# --- the command -------------------------------------------------------------------------


def invoke(*args):
    return CliRunner().invoke(cli, ["compare", *map(str, args)])


def test_cli_exit_codes(runs):
    assert invoke(runs["base"], runs["same"], "--fail-on", "p99:+10%").exit_code == 0
    slower = invoke(runs["base"], runs["slower"], "--fail-on", "p99:+10%,throughput:-5%", "--format", "markdown")
    assert slower.exit_code == 1
    assert "REGRESSION: p99:+10% (B)" in slower.output
    assert invoke(runs["base"], runs["slower"]).exit_code == 0  # no rules: a table, nothing judged


@pytest.mark.parametrize("case", ["missing dir", "unknown metric", "bad rule", "one dir", "old schema",
                                  "newer schema", "broken json", "bad hlog", "empty hlog"])
def test_cli_bad_input_exits_2_with_one_line(runs, tmp_path, case):
    base, same = runs["base"], runs["same"]
    args = [base, same, "--fail-on", "p99:+10%"]
    if case == "missing dir":
        args[1] = tmp_path / "nowhere"
    elif case == "unknown metric":
        args[3] = "p98:+10%"
    elif case == "bad rule":
        args[3] = "p99=10"
    elif case == "one dir":
        args = [base]
    elif case in ("old schema", "newer schema"):
        summary = json.loads((same / "summary.json").read_text())
        summary["schema_version"] = 0 if case == "old schema" else SCHEMA_VERSION + 1
        (same / "summary.json").write_text(json.dumps(summary))
    elif case == "broken json":
        (same / "summary.json").write_text("{")
    elif case == "bad hlog":
        (same / "e2e.hlog").write_text("0.000,1.000,1.0,HISTFAAAAnotbase64\n")
    elif case == "empty hlog":
        (same / "e2e.hlog").write_text("")
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ")
    assert result.output.strip().count("\n") == 0, result.output
