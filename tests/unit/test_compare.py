import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.compare.comparison import compare
from bench.compare.metrics import METRICS, RuleError, metric
from bench.compare.render import render
from bench.compare.rules import Rule, parse_rules
from bench.compare.stats import _u_distribution, hodges_lehmann, mann_whitney_p, min_p_value, shift_interval
from bench.results.recording import merged, new_histogram, read_hlog, summary_ms, write_intervals
from bench.results.files import SCHEMA_VERSION, write_summary

T0 = 1_700_000_000.25
WARMUP_S, DURATION_S, RATE = 2, 10, 300


def make_result(path, *, scale=1.0, seed=1, interval_factors=None, lost=0, messages=5.0, valid=True,
                interrupted=False, pattern="orchestration"):
    """A run directory with lognormal latencies (~20 ms median) in 1 s intervals.
    ``scale`` multiplies every latency of the run; ``interval_factors`` each interval's."""
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    factors = interval_factors or [1.0] * DURATION_S
    intervals = []
    for k, second in enumerate(range(WARMUP_S, WARMUP_S + DURATION_S)):
        histogram = new_histogram()
        for value in rng.lognormal(math.log(20_000), 0.5, RATE) * scale * factors[k % len(factors)]:
            histogram.record_value(int(value))
        intervals.append((second, second + 1, histogram))
    write_intervals(path / "e2e.hlog", intervals, T0, name="e2e")
    write_intervals(path / "step-payment.hlog", intervals, T0, name="payment")
    rows = ["t_s,offered,finished,in_flight,lag,p99_ms"]
    rows += [f"{t},{RATE},{RATE},5,0,{summary_ms(h)['p99']}" for t, _, h in [(s + 1, 0, h) for s, _, h in intervals]]
    (path / "timeseries.csv").write_text("\n".join(rows) + "\n")
    e2e = summary_ms(merged([h for _, _, h in intervals]))
    write_summary(path, {
        "mode": "real", "pattern": pattern, "rate_target_per_s": RATE, "rate_offered_per_s": RATE,
        "rate_achieved_per_s": RATE, "duration_s": DURATION_S, "warmup_s": WARMUP_S, "valid": valid,
        "invalid_reason": None if valid else "backlog kept growing", "interrupted": interrupted,
        "orders": {"started": RATE * 12, "completed": RATE * 12 - lost, "cancelled": 0, "lost": lost,
                   "stuck": 0, "duplicates": 0, "multiple_terminal": 0, "compensated_early": 0, "inconsistent": 0},
        "latency_ms": {"e2e": e2e, "steps": {"payment": e2e}},
        "messages_per_order": messages, "bytes_per_order": 600.0,
        "timeline": {"start_wall_s": T0, "measure_start_s": T0 + WARMUP_S, "measure_end_s": T0 + WARMUP_S + DURATION_S},
    })
    return path


def make_series(path, scales, *, seed=1, **kwargs):
    """``path/1`` .. ``path/N``, run k scaled by ``scales[k - 1]``."""
    for k, scale in enumerate(scales, start=1):
        make_result(path / str(k), scale=scale, seed=seed * 100 + k, **kwargs)
    return path


# Run-to-run noise of identical code: each run's latencies are scaled by its own factor.
SAME_CODE = [1.0, 1.06, 0.95, 1.02, 0.98]


@pytest.fixture
def runs(tmp_path):
    return {
        "base": make_result(tmp_path / "base"),
        "same": make_result(tmp_path / "same"),
        "slower": make_result(tmp_path / "slower", scale=1.3, seed=3),
        "lossy": make_result(tmp_path / "lossy", lost=2),
        "A": make_series(tmp_path / "A", SAME_CODE[:4], seed=1),
        "A2": make_series(tmp_path / "A2", SAME_CODE[1:], seed=2),
        "B": make_series(tmp_path / "B", [1.3 * f for f in SAME_CODE[:4]], seed=3),
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


# --- judging across runs ------------------------------------------------------------


def test_identical_code_in_two_series_is_no_regression(runs):
    c = compare([runs["A"], runs["A2"]], parse_rules("p99:+10%,p50:+10%,throughput:-5%"))
    assert not c.regressions and not c.failed
    for v in c.verdicts:
        assert len(v.values) == len(v.baseline_values) == 4
        assert v.p_value is not None and v.method == "Mann-Whitney U over 4 vs 4 runs"
        low, high, confidence = v.interval
        assert low <= v.change <= high and confidence == pytest.approx(1 - 2 * 2 / 70)


def test_a_shifted_series_is_a_regression_with_its_interval(runs):
    c = compare([runs["A"], runs["B"]], parse_rules("p50:+10%,p99:+10%,step.payment.p50:+10%"))
    assert [v.rule.text for v in c.regressions] == ["p50:+10%", "p99:+10%", "step.payment.p50:+10%"]
    for v in c.verdicts:
        assert v.change == pytest.approx(0.3, abs=0.1)
        assert v.p_value == pytest.approx(1 / 70)  # every B run slower than every A run
        assert 0 < v.interval[0] < v.change < v.interval[1]


def test_intervals_that_differ_while_runs_do_not_are_no_regression(tmp_path):
    # Runs of identical code differ by up to 40% (broker state, neighbours), each run tight inside.
    # Any one pair of runs differs in every interval; across runs the two sides are the same.
    a = make_series(tmp_path / "a", [1.0, 1.3, 0.8, 1.15], seed=1)
    b = make_series(tmp_path / "b", [1.25, 0.85, 1.1, 0.95], seed=2)
    per_interval = lambda run: [summary_ms(h)["p50"] for h in read_hlog(run / "e2e.hlog")]
    assert mann_whitney_p(per_interval(b / "1"), per_interval(a / "1")) < 0.001  # what a test over intervals says
    (v,) = compare([a, b], parse_rules("p50:+10%")).verdicts
    assert v.p_value > 0.3 and not v.regression


def test_runs_that_differ_while_intervals_do_not_are_a_regression(tmp_path):
    # Each run swings +-30% from second to second (the same swing in every run), so one run's
    # intervals overlap the other's; but every candidate run is 10% slower than every baseline run.
    swing = [0.7, 1.3, 0.8, 1.2, 1.0, 0.75, 1.25, 0.9, 1.1, 1.0]
    a = make_series(tmp_path / "a", [1.0, 1.01, 0.99, 1.005], seed=1, interval_factors=swing)
    b = make_series(tmp_path / "b", [1.1, 1.11, 1.09, 1.105], seed=2, interval_factors=swing)
    per_interval = lambda run: [summary_ms(h)["p50"] for h in read_hlog(run / "e2e.hlog")]
    assert mann_whitney_p(per_interval(b / "1"), per_interval(a / "1")) > 0.05
    (v,) = compare([a, b], parse_rules("p50:+5%")).verdicts
    assert v.regression and v.p_value < 0.05 and v.change == pytest.approx(0.1, abs=0.03)


def test_one_run_per_side_is_judged_by_threshold_only_and_says_so(runs):
    (v,) = compare([runs["base"], runs["slower"]], parse_rules("p50:+10%")).verdicts
    assert v.p_value is None and v.threshold_only and v.regression
    assert v.method == "one run per side cannot show significance: threshold only"
    assert "REGRESSION (threshold only)" in render(compare([runs["base"], runs["slower"]], parse_rules("p50:+10%")))
    (same,) = compare([runs["base"], runs["same"]], parse_rules("p50:+10%")).verdicts
    assert same.change == 0 and not same.regression


def test_too_few_runs_for_significance_are_threshold_only(tmp_path):
    a = make_series(tmp_path / "a", [1.0, 1.0, 1.0], seed=1)
    b = make_series(tmp_path / "b", [1.3, 1.3, 1.3], seed=2)
    assert min_p_value(3, 3) == pytest.approx(0.05)  # never below alpha 0.05
    (v,) = compare([a, b], parse_rules("p50:+10%")).verdicts
    assert v.threshold_only and v.regression and "3 vs 3 runs cannot reach p < 0.05" in v.method


def test_past_threshold_but_not_significant_is_no_regression(tmp_path):
    a = make_series(tmp_path / "a", [1.0, 1.5, 0.9, 1.1], seed=1)
    b = make_series(tmp_path / "b", [1.6, 1.05, 1.4, 1.2], seed=2)
    (v,) = compare([a, b], parse_rules("p50:+10%")).verdicts
    assert v.past_threshold and not v.significant and not v.regression


def test_a_smaller_change_than_the_threshold_is_no_regression(runs):
    (v,) = compare([runs["A"], runs["B"]], parse_rules("p50:+50%")).verdicts
    assert v.significant and not v.past_threshold and not v.regression


def test_counts_are_judged_by_threshold_on_the_worst_run(runs):
    c = compare([runs["base"], runs["lossy"]], parse_rules("lost:+0,messages_per_order:+1%"), allow_broken=True)
    lost, messages = c.verdicts
    assert lost.regression and lost.p_value is None and lost.change == math.inf
    assert lost.method == "a count: worst run, threshold only"
    assert not messages.regression


def test_every_candidate_is_judged_against_the_first(runs):
    c = compare([runs["A"], runs["A2"], runs["B"]], parse_rules("p50:+10%"))
    assert [(v.candidate, v.regression) for v in c.verdicts] == [(1, False), (2, True)]


def test_hodges_lehmann_and_its_interval():
    assert hodges_lehmann([10, 11, 12, 13], [5, 6, 7, 8]) == 5.0
    low, high, confidence = shift_interval([10, 11, 12, 13], [5, 6, 7, 8], 0.05)
    assert (low, high) == (3.0, 7.0) and confidence == pytest.approx(66 / 70)
    assert shift_interval([1.0], [2.0], 0.05) is None
    rng = np.random.default_rng(3)
    low, high, confidence = shift_interval(rng.normal(1, 1, 80), rng.normal(0, 1, 80), 0.05)  # normal approximation
    assert low < 1 < high and confidence == pytest.approx(0.9)


# --- a broken candidate ------------------------------------------------------------------


@pytest.mark.parametrize("broken", [{"valid": False}, {"interrupted": True}, {"lost": 3}])
def test_a_broken_candidate_fails_the_gate_whatever_the_rules_say(tmp_path, broken):
    a = make_series(tmp_path / "a", SAME_CODE[:4], seed=1)
    b = make_series(tmp_path / "b", SAME_CODE[1:4], seed=2)
    make_result(b / "4", seed=9, **broken)
    c = compare([a, b], parse_rules("p99:+1000%"))
    assert not c.regressions and c.failed
    text = render(c)
    assert "BROKEN CANDIDATE: B" in text and "candidate B is broken (fails the gate): 4: " in text
    assert not compare([a, b], parse_rules("p99:+1000%"), allow_broken=True).failed
    assert not compare([a, b]).failed  # no rules: a table, nothing judged
    assert invoke(a, b, "--fail-on", "p99:+1000%").exit_code == 1
    assert invoke(a, b, "--fail-on", "p99:+1000%", "--allow-broken").exit_code == 0


def test_a_broken_baseline_is_reported_but_does_not_fail(tmp_path):
    a = make_series(tmp_path / "a", SAME_CODE[:3], seed=1)
    make_result(a / "4", seed=9, valid=False)
    b = make_series(tmp_path / "b", SAME_CODE[1:], seed=2)
    c = compare([a, b], parse_rules("p99:+50%"))
    assert not c.failed and "baseline A is not a sound measurement: 4: invalid" in render(c)


# --- table and formats ---------------------------------------------------------------------


def test_side_by_side_shows_each_series_median(runs):
    c = compare([runs["A"], runs["B"]])
    rows = {row.name: row for row in c.rows}
    assert rows["pattern"].values == ("orchestration", "orchestration")
    assert rows["runs"].values == (4, 4)
    assert rows["e2e p50"].changes[1] == pytest.approx(0.3, abs=0.1)
    assert rows["step.payment.p99"].values[0] == rows["e2e p99"].values[0]
    assert {"lost", "stuck", "duplicates", "multiple_terminal", "inconsistent", "messages/order",
            "bytes/order", "CPU/order"} <= set(rows)


def test_formats(runs):
    c = compare([runs["A"], runs["B"]], parse_rules("p50:+10%"))
    text = render(c, "text")
    assert "REGRESSION" in text and "Mann-Whitney U over 4 vs 4 runs" in text and "94% CI +" in text
    assert "spread A " in text
    markdown = render(c, "markdown")
    assert "| metric | unit | A | B | vs A |" in markdown and "❌" in markdown
    document = json.loads(render(c, "json"))
    assert document["regression"] is True and document["failed"] is True
    rule = document["rules"][0]
    assert rule["metric"] == "p50" and rule["regression"] is True and len(rule["values"]) == 4
    assert rule["interval"]["low"] > 0 and rule["spread"]["baseline"] > 0
    assert [side["label"] for side in document["sides"]] == ["A", "B"]
    assert len(document["sides"][0]["runs"]) == 4


# --- the command -------------------------------------------------------------------------


def invoke(*args):
    return CliRunner().invoke(cli, ["compare", *map(str, args)])


def test_cli_exit_codes(runs):
    assert invoke(runs["A"], runs["A2"], "--fail-on", "p99:+10%").exit_code == 0
    slower = invoke(runs["A"], runs["B"], "--fail-on", "p99:+10%,throughput:-5%", "--format", "markdown")
    assert slower.exit_code == 1
    assert "REGRESSION: p99:+10% (B)" in slower.output
    assert invoke(runs["A"], runs["B"]).exit_code == 0  # no rules: a table, nothing judged


@pytest.mark.parametrize("case", ["missing dir", "unknown metric", "bad rule", "one dir", "old schema",
                                  "newer schema", "broken json", "wrong type", "missing field", "empty dir",
                                  "half-written run", "mixed series"])
def test_cli_bad_input_exits_2_with_one_line(runs, tmp_path, case):
    base, same = runs["base"], runs["same"]
    args = [base, same, "--fail-on", "p99:+10%"]
    summary = json.loads((same / "summary.json").read_text())
    if case == "missing dir":
        args[1] = tmp_path / "nowhere"
    elif case == "unknown metric":
        args[3] = "p98:+10%"
    elif case == "bad rule":
        args[3] = "p99=10"
    elif case == "one dir":
        args = [base]
    elif case in ("old schema", "newer schema"):
        summary["schema_version"] = 0 if case == "old schema" else SCHEMA_VERSION + 1
        (same / "summary.json").write_text(json.dumps(summary))
    elif case == "broken json":
        (same / "summary.json").write_text("{")
    elif case == "wrong type":
        summary["latency_ms"]["e2e"]["p99"] = "fast"
        (same / "summary.json").write_text(json.dumps(summary))
    elif case == "missing field":
        del summary["orders"]
        (same / "summary.json").write_text(json.dumps(summary))
    elif case == "empty dir":
        (tmp_path / "empty").mkdir()
        args[1] = tmp_path / "empty"
    elif case == "half-written run":
        (runs["A"] / "5").mkdir()
        (runs["A"] / "5" / "e2e.hlog").write_text("")
        args[1] = runs["A"]
    elif case == "mixed series":
        make_result(runs["A"] / "5", pattern="choreography")
        args[1] = runs["A"]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1, result.output
