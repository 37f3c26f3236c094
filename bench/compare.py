"""Comparing runs and series: a side-by-side table, and regression rules judged across runs.

Each argument is a run directory or a series of them (:mod:`bench.series`); the first is the
baseline and every other one is compared with it. A rule such as ``p99:+10%`` names a
metric and how far it may get worse. The metric is taken once per run (its p99 over the
run's measurement window, its throughput, ...), so a series gives one value per run.
A candidate regresses on a rule when the change is past the threshold *and* significant
across runs: the candidate's run values are shifted the worse way by a one-sided
Mann-Whitney U test. The change is the Hodges-Lehmann shift (the median of every
candidate-minus-baseline difference) with its distribution-free confidence interval.

Why runs and not the seconds inside one run: the intervals of one run share its broker
state, JIT, page cache and neighbours, so a test over them finds that two runs differ,
which any two runs do. With too few runs per side for the test to reach significance
(one run per side, or 3 + 3 at alpha 0.05), a rule is judged by its threshold alone and
the verdict says so. Counts (lost orders, ...) are judged by their threshold on the worst run.

A candidate side with a broken run (interrupted, invalid, or with faulty orders) fails
any gate, whatever the rules say, unless the caller allows it.
"""
from __future__ import annotations

import functools
import math
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from hdrh.histogram import HdrHistogram

from bench import inputs
from bench import saga as saga_mod
from bench import series, summary as run_summary
from bench.recording import read_hlog
from bench.errors import BadInput
from bench.results import ResultsError

ALPHA = 0.05  # one-sided significance level of the Mann-Whitney U test
EXACT_MAX_N = 50  # exact U distribution up to this many runs per side (without ties)
FORMATS = ("text", "markdown", "json")
STATS = ("p50", "p90", "p99", "p999", "max", "mean")
TABLE_STATS = ("p50", "p90", "p99", "p999", "max")


class RuleError(BadInput):
    """A --fail-on rule that cannot be used; the message is one line."""


# --- runs and sides -------------------------------------------------------------


@dataclass
class Result:
    """A run directory: its summary, and its histograms read on demand."""

    path: Path
    summary: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> Result:
        return cls(Path(path), run_summary.read(path))

    @property
    def pattern(self) -> str:
        return str(self.summary.get("pattern", "?"))

    def histograms(self, hlog: str) -> list[HdrHistogram]:
        """Every interval of ``hlog`` (e.g. ``"e2e.hlog"``); all hold measured values only."""
        path = self.path / hlog
        if not path.exists():
            raise ResultsError(f"{path}: missing")
        inputs.check_regular(path, "HdrHistogram log", ResultsError, inputs.MAX_HLOG_BYTES)
        try:
            intervals = read_hlog(path)
        except Exception as err:  # hdrh raises whatever its decoder trips on; name the file, exit 2
            kind = f"{type(err).__module__}.{type(err).__name__}".removeprefix("builtins.")
            raise ResultsError(f"{path}: not a readable HdrHistogram log: {kind}") from None
        if not intervals:  # a run writes one interval a second, empty or not
            raise ResultsError(f"{path}: holds no intervals (truncated?)")
        return intervals


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a run, or a series of runs of one configuration."""

    path: Path
    runs: tuple[Result, ...]

    @classmethod
    def load(cls, path: str | Path) -> Side:
        return cls(Path(path), tuple(Result(p, s) for p, s in series.read(path)))

    @classmethod
    def of(cls, result: Result) -> Side:
        return cls(result.path, (result,))

    @property
    def summary(self) -> dict[str, Any]:
        """The first run's summary: what every run of the side shares (pattern, mode, rate)."""
        return self.runs[0].summary

    @property
    def pattern(self) -> str:
        return self.runs[0].pattern

    def values(self, m: Metric) -> list[float]:
        found = []
        for run in self.runs:
            value = m.value(run.summary)
            if value is None:
                raise ResultsError(f"{run.path}: has no value for {m.name}")
            found.append(float(value))
        return found

    def problems(self) -> list[str]:
        """Each broken run's problems, ``run: problem; problem``."""
        named = lambda r: r.path.name if len(self.runs) > 1 else str(r.path)
        return [f"{named(r)}: {'; '.join(p)}" for r in self.runs if (p := run_summary.problems(r.summary))]


# --- metrics ------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """A number read from one run's summary. A ``count`` (lost orders, ...) is judged by its
    threshold on the side's worst run; any other metric by the test across runs."""

    name: str
    unit: str
    higher_is_worse: bool
    value: Callable[[dict[str, Any]], float | None]
    count: bool = False

    @property
    def worse_sign(self) -> str:
        return "+" if self.higher_is_worse else "-"


def _get(summary: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(summary, dict):
            return None
        summary = summary.get(key)
    return summary


def _latency(name: str, keys: tuple[str, ...], stat: str) -> Metric:
    return Metric(name, "ms", True, lambda s: _get(s, *keys, stat))


# Latency histograms other than steps: metric prefix -> keys in summary.json.
HISTOGRAMS: dict[str, tuple[str, ...]] = {
    "e2e": ("latency_ms", "e2e"),
    "e2e_completed": ("latency_ms", "e2e_completed"),
    "e2e_cancelled": ("latency_ms", "e2e_cancelled"),
    "slip": ("latency_ms", "schedule_slip"),
}
COUNTS = run_summary.Orders.FAULTS  # judged on the worst run, by threshold


def _registry() -> dict[str, Metric]:
    metrics = {
        "throughput": Metric("throughput", "/s", False, lambda s: s.get("rate_achieved_per_s")),
        "messages_per_order": Metric("messages_per_order", "msgs", True, lambda s: s.get("messages_per_order")),
        "bytes_per_order": Metric("bytes_per_order", "B", True, lambda s: s.get("bytes_per_order")),
        "cpu": Metric("cpu", "s", True, lambda s: _get(s, "cpu_s", "harness_total")),
        "cpu_per_order": Metric("cpu_per_order", "us", True, lambda s: _get(s, "cost", "cpu_us_per_order", "total")),
    }
    for count in COUNTS:
        metrics[count] = Metric(count, "orders", True, lambda s, c=count: _get(s, "orders", c), count=True)
    for prefix, keys in HISTOGRAMS.items():
        for stat in STATS:
            metrics[f"{prefix}.{stat}"] = _latency(f"{prefix}.{stat}", keys, stat)
    for stat in STATS:  # the bare percentile means end-to-end latency
        metrics[stat] = _latency(stat, HISTOGRAMS["e2e"], stat)
    return metrics


METRICS: dict[str, Metric] = _registry()
_STEP = re.compile(r"step\.([A-Za-z0-9_-]+)\.(" + "|".join(STATS) + ")")


def metric(name: str) -> Metric:
    """The metric called ``name``: one of :data:`METRICS`, or ``step.<step>.<stat>``."""
    if name in METRICS:
        return METRICS[name]
    if match := _STEP.fullmatch(name):
        step, stat = match.groups()
        return _latency(name, ("latency_ms", "steps", step), stat)
    fixed = ", ".join(n for n in METRICS if "." not in n)
    raise RuleError(f"unknown metric {name!r} (known: {fixed}, e2e|e2e_completed|e2e_cancelled|slip.<stat>, "
                    f"step.<step>.<stat>; stat: {'|'.join(STATS)})")


# --- rules --------------------------------------------------------------------

_RULE = re.compile(r"\s*(?P<metric>[^:\s]+)\s*:\s*(?P<sign>[+-]?)\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>\S+)?\s*")


@dataclass(frozen=True)
class Rule:
    """``metric`` may get worse by at most ``threshold``: a fraction when ``relative``,
    else an amount in the metric's unit."""

    text: str
    metric: Metric
    threshold: float
    relative: bool

    @classmethod
    def parse(cls, text: str) -> Rule:
        match = _RULE.fullmatch(text)
        if not match:
            raise RuleError(f"bad rule {text.strip()!r}: expected METRIC:+N% or METRIC:+N (e.g. p99:+10%, "
                            "throughput:-5%, lost:+0)")
        m = metric(match["metric"])
        sign, unit, number = match["sign"], match["unit"], float(match["number"])
        if sign and sign != m.worse_sign:
            way = "rises" if m.higher_is_worse else "falls"
            raise RuleError(f"rule {text.strip()!r}: {m.name} gets worse when it {way}; "
                            f"write {m.name}:{m.worse_sign}{match['number']}{unit or ''}")
        if unit not in (None, "%", m.unit):
            raise RuleError(f"rule {text.strip()!r}: unit {unit!r} is not % or {m.name}'s unit {m.unit!r}")
        relative = unit == "%"
        return cls(text.strip(), m, number / 100.0 if relative else number, relative)


def parse_rules(text: str) -> tuple[Rule, ...]:
    """Comma-separated rules, e.g. ``"p99:+10%,p50:+10%,throughput:-5%"``; empty text gives none."""
    return tuple(Rule.parse(part) for part in text.split(",") if part.strip())


# --- the statistics -------------------------------------------------------------


def _ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks with ties averaged, and the size of each group of ties."""
    order = np.argsort(values, kind="mergesort")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks, counts


@functools.cache
def _u_distribution(n: int, m: int) -> np.ndarray:
    """How many of the C(n+m, n) orderings of two untied samples give each U = 0..n*m."""
    # f(i, j)[u] = f(i-1, j)[u-j] + f(i, j-1)[u]; floats, as the counts outgrow int64.
    row = [np.ones(1) for _ in range(m + 1)]  # i = 0: one ordering, U = 0
    for i in range(1, n + 1):
        new = [np.ones(1)]  # j = 0
        for j in range(1, m + 1):
            dist = np.zeros(i * j + 1)
            dist[j:j + len(row[j])] += row[j]
            dist[:len(new[j - 1])] += new[j - 1]
            new.append(dist)
        row = new
    return row[m]


def mann_whitney_p(worse: Sequence[float], better: Sequence[float]) -> float:
    """One-sided p-value of the Mann-Whitney U test that ``worse`` tends to be larger
    than ``better``: exact for small samples without ties, else the normal
    approximation with tie and continuity corrections."""
    x, y = np.asarray(worse, dtype=float), np.asarray(better, dtype=float)
    n, m = len(x), len(y)
    ranks, ties = _ranks(np.concatenate([x, y]))
    u = float(ranks[:n].sum() - n * (n + 1) / 2.0)  # pairs with x > y, ties counting half
    if (ties == 1).all() and max(n, m) <= EXACT_MAX_N:
        dist = _u_distribution(n, m)
        return float(dist[int(round(u)):].sum() / dist.sum())
    total = n + m
    variance = n * m / 12.0 * ((total + 1) - float((ties**3 - ties).sum()) / (total * (total - 1)))
    if variance <= 0:  # every value equal
        return 1.0
    z = (u - n * m / 2.0 - 0.5) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def min_p_value(n: int, m: int) -> float:
    """The smallest one-sided p-value the exact test can give for n vs m untied runs."""
    return 1.0 / math.comb(n + m, n)


def hodges_lehmann(after: Sequence[float], before: Sequence[float]) -> float:
    """The shift from ``before`` to ``after``: the median of every difference a - b."""
    return float(np.median(np.subtract.outer(np.asarray(after, float), np.asarray(before, float))))


def shift_interval(after: Sequence[float], before: Sequence[float], alpha: float) -> tuple[float, float, float] | None:
    """The distribution-free confidence interval of the shift (Moses; it inverts the
    Mann-Whitney test): ``(low, high, confidence)`` from the sorted differences, with
    ``alpha`` or less on each side; None when the runs are too few for any."""
    n, m = len(after), len(before)
    diffs = np.sort(np.subtract.outer(np.asarray(after, float), np.asarray(before, float)).ravel())
    if max(n, m) <= EXACT_MAX_N:
        dist = _u_distribution(n, m)
        tail = np.cumsum(dist) / dist.sum()  # P(U <= u)
        below = int(np.count_nonzero(tail <= alpha))  # k: P(U <= k - 1) <= alpha
        tail_p = float(tail[below - 1]) if below else 0.0
    else:
        z = statistics.NormalDist().inv_cdf(1.0 - alpha)
        below = int(math.floor(n * m / 2.0 - z * math.sqrt(n * m * (n + m + 1) / 12.0)))
        tail_p = alpha
    if below < 1:
        return None
    return float(diffs[below - 1]), float(diffs[n * m - below]), 1.0 - 2.0 * tail_p


def spread(values: Sequence[float]) -> float | None:
    """(max - min) / median of one side's run values: how much identical runs differ."""
    middle = float(np.median(values))
    return None if len(values) < 2 or middle == 0 else (max(values) - min(values)) / abs(middle)


# --- judging --------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    rule: Rule
    candidate: int  # index into Comparison.sides (0 is the baseline)
    baseline_values: tuple[float, ...]  # one per run
    values: tuple[float, ...]
    baseline_value: float  # the side's median run (for a count: its worst run)
    value: float
    shift: float  # candidate - baseline in the metric's unit (Hodges-Lehmann across runs)
    change: float  # shift relative to the baseline value; inf from a zero baseline
    interval: tuple[float, float, float] | None  # (low, high, confidence) of the relative change
    past_threshold: bool
    p_value: float | None  # None: judged by threshold only
    significant: bool
    method: str

    @property
    def regression(self) -> bool:
        return self.past_threshold and self.significant

    @property
    def threshold_only(self) -> bool:
        return self.p_value is None

    def to_dict(self) -> dict[str, Any]:
        finite = lambda x: None if math.isinf(x) else x
        return {"rule": self.rule.text, "metric": self.rule.metric.name, "unit": self.rule.metric.unit,
                "candidate": self.candidate, "baseline_values": list(self.baseline_values), "values": list(self.values),
                "baseline_value": self.baseline_value, "value": self.value, "shift": self.shift,
                "change": finite(self.change),
                "interval": None if self.interval is None else
                {"low": finite(self.interval[0]), "high": finite(self.interval[1]), "confidence": self.interval[2]},
                "spread": {"baseline": spread(self.baseline_values), "candidate": spread(self.values)},
                "past_threshold": self.past_threshold, "p_value": self.p_value, "significant": self.significant,
                "threshold_only": self.threshold_only, "method": self.method, "regression": self.regression}


def _relative(base: float, value: float) -> float:
    if base == 0:
        return 0.0 if value == 0 else math.copysign(math.inf, value)
    return (value - base) / abs(base)


def judge(rule: Rule, baseline: Side, candidate: Side, index: int, alpha: float = ALPHA) -> Verdict:
    m = rule.metric
    before, after = baseline.values(m), candidate.values(m)
    worse = 1.0 if m.higher_is_worse else -1.0
    n, k = len(after), len(before)
    p_value, interval = None, None
    if m.count:
        pick = max if m.higher_is_worse else min
        base, value = pick(before), pick(after)
        shift = value - base
        method = "a count: worst run, threshold only"
    else:
        base, value = float(np.median(before)), float(np.median(after))
        shift = hodges_lehmann(after, before)
        if min(n, k) >= 2 and min_p_value(n, k) < alpha:
            p_value = mann_whitney_p([worse * v for v in after], [worse * v for v in before])
            found = shift_interval(after, before, alpha)
            if found is not None:
                low, high, confidence = found
                interval = (_relative(base, base + low), _relative(base, base + high), confidence)
            method = f"Mann-Whitney U over {k} vs {n} runs"
        elif n == k == 1:
            method = "one run per side cannot show significance: threshold only"
        else:
            method = f"{k} vs {n} runs cannot reach p < {alpha:g} (4 + 4 can): threshold only"
    change = _relative(base, base + shift)
    past = worse * (change if rule.relative else shift) > rule.threshold
    significant = p_value < alpha if p_value is not None else True
    return Verdict(rule, index, tuple(before), tuple(after), base, value, shift, change, interval, past,
                   p_value, significant, method)


@dataclass(frozen=True)
class Row:
    """One line of the side-by-side table: a value per side and its change against the first."""

    name: str
    unit: str
    values: tuple[Any, ...]

    @property
    def changes(self) -> tuple[float | None, ...]:
        base = self.values[0]
        numeric = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
        return tuple(_relative(base, v) if numeric(base) and numeric(v) else None for v in self.values)


def _median(values: list[Any]) -> Any:
    """The median of a side's run values; the first value when they are not all numbers."""
    if not values or any(v is None or isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        return values[0] if values else None
    return float(np.median(values)) if len(values) > 1 else values[0]


def _saga(summary: dict) -> str:
    """The run's saga, one line (a run from before sagas were defined in the workload ran the default)."""
    raw = _get(summary, "workload", "saga")
    try:
        return (saga_mod.parse(raw) if raw is not None else saga_mod.DEFAULT).describe()
    except saga_mod.SagaError:
        return "?"


def _validity(side: Side) -> str:
    broken = [r for r in side.runs if not r.summary.get("valid")]
    if not broken:
        return "yes"
    reason = broken[0].summary.get("invalid_reason")
    return f"NO: {reason}" if len(side.runs) == 1 else f"NO ({len(broken)} of {len(side.runs)}): {reason}"


def side_by_side(sides: Sequence[Side]) -> list[Row]:
    """Pattern, mode, rates, validity, e2e and per-step latency, cost and audit counts of
    each side; a series shows the median of its runs."""
    row = lambda name, unit, f: Row(name, unit, tuple(_median([f(r.summary) for r in side.runs]) for side in sides))
    rows = [
        row("pattern", "", lambda x: x.get("pattern")),
        row("mode", "", lambda x: x.get("mode")),
        row("saga", "", _saga),
        Row("runs", "", tuple(len(side.runs) for side in sides)),
        Row("valid", "", tuple(_validity(side) for side in sides)),
        row("rate target", "/s", lambda x: x.get("rate_target_per_s")),
        row("rate offered", "/s", lambda x: x.get("rate_offered_per_s")),
        row("throughput", "/s", lambda x: x.get("rate_achieved_per_s")),
    ]
    rows += [row(f"e2e {stat}", "ms", lambda x, st=stat: _get(x, "latency_ms", "e2e", st)) for stat in TABLE_STATS]
    steps = step_names([r for side in sides for r in side.runs])
    rows += [row(f"step.{step}.{stat}", "ms", lambda x, sp=step, st=stat: _get(x, "latency_ms", "steps", sp, st))
             for step in steps for stat in TABLE_STATS]
    rows += [row("messages/order", "msgs", lambda x: x.get("messages_per_order")),
             row("bytes/order", "B", lambda x: x.get("bytes_per_order")),
             row("CPU/order", "us", lambda x: _get(x, "cost", "cpu_us_per_order", "total"))]
    rows += [Row(count, "orders", tuple(max((_get(r.summary, "orders", count) or 0) for r in side.runs)
                                        if any(_get(r.summary, "orders", count) is not None for r in side.runs)
                                        else None for side in sides))
             for count in COUNTS]
    return rows


def step_names(results: Sequence[Result]) -> list[str]:
    """Every step of any result, in the order the results list them (each run writes its steps
    in its saga's order: bench.audit.step_names)."""
    found: dict[str, None] = {}
    for r in results:
        found.update(dict.fromkeys(_get(r.summary, "latency_ms", "steps") or {}))
    return list(found)


@dataclass(frozen=True)
class Comparison:
    sides: tuple[Side, ...]
    rows: tuple[Row, ...]
    verdicts: tuple[Verdict, ...]
    alpha: float
    allow_broken: bool = False

    @property
    def regressions(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.regression)

    @property
    def broken(self) -> dict[int, list[str]]:
        """Candidate side index -> its broken runs' problems."""
        return {i: p for i, side in enumerate(self.sides) if i and (p := side.problems())}

    @property
    def baseline_problems(self) -> list[str]:
        return self.sides[0].problems()

    @property
    def failed(self) -> bool:
        """The gate's verdict: a regression, or (with rules, unless allowed) a broken candidate."""
        return bool(self.regressions) or bool(self.verdicts and self.broken and not self.allow_broken)


def compare(dirs: Sequence[str | Path], rules: Sequence[Rule] = (), alpha: float = ALPHA,
            allow_broken: bool = False) -> Comparison:
    """Read every run or series (raising ResultsError for one that cannot be used) and
    judge each rule for each side after the first against the first."""
    if len(dirs) < 2:
        raise ResultsError("compare needs at least two result directories or series: the first is the baseline")
    sides = tuple(Side.load(d) for d in dirs)
    verdicts = tuple(judge(rule, sides[0], cand, i, alpha)
                     for i, cand in enumerate(sides[1:], start=1) for rule in rules)
    return Comparison(sides, tuple(side_by_side(sides)), verdicts, alpha, allow_broken)


# --- output -----------------------------------------------------------------------


def label(index: int) -> str:
    return chr(ord("A") + index) if index < 26 else f"R{index}"


def fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if float(value).is_integer() or abs(value) >= 10_000:
        return f"{value:.0f}"
    return f"{value:.4g}"


def fmt_change(change: float | None) -> str:
    if change is None:
        return ""
    if math.isinf(change):
        return "new" if change > 0 else "-inf"
    return f"{change * 100:+.1f}%"


def _table_cells(c: Comparison) -> tuple[list[str], list[list[str]]]:
    header = ["metric", "unit"]
    for i in range(len(c.sides)):
        header += [label(i)] if i == 0 else [label(i), f"vs {label(0)}"]
    body = []
    for row in c.rows:
        cells = [row.name, row.unit]
        for i, (value, change) in enumerate(zip(row.values, row.changes)):
            cells += [fmt_value(value)] if i == 0 else [fmt_value(value), fmt_change(change)]
        body.append(cells)
    return header, body


def _fmt_interval(v: Verdict) -> str:
    if v.interval is None:
        return "-"
    low, high, confidence = v.interval
    return f"{confidence * 100:.0f}% CI {fmt_change(low)}..{fmt_change(high)}"


def _fmt_spread(v: Verdict) -> str:
    parts = [f"{label(i)} {s * 100:.0f}%" for i, s in ((0, spread(v.baseline_values)), (v.candidate, spread(v.values)))
             if s is not None]
    return "spread " + ", ".join(parts) if parts else "-"


def _status(v: Verdict) -> str:
    if v.regression:
        return "REGRESSION (threshold only)" if v.threshold_only and not v.rule.metric.count else "REGRESSION"
    return "not significant" if v.past_threshold else "ok"


def _verdict_line(c: Comparison, v: Verdict) -> tuple[str, ...]:
    unit = v.rule.metric.unit
    p = "-" if v.p_value is None else f"{v.p_value:.3g}"
    return (v.rule.text, f"{label(v.candidate)} vs {label(0)}",
            f"{fmt_value(v.baseline_value)} -> {fmt_value(v.value)} {unit}", fmt_change(v.change), _fmt_interval(v),
            _fmt_spread(v), f"p={p}", v.method, _status(v))


def _legend(c: Comparison) -> list[str]:
    lines = []
    for i, side in enumerate(c.sides):
        s = side.summary
        runs = f", {len(side.runs)} runs" if len(side.runs) > 1 else ""
        lines.append(f"{label(i)}  {side.path}  ({side.pattern}, {s.get('mode', '?')}, "
                     f"{fmt_value(s.get('rate_target_per_s'))}/s{runs})")
    return lines


def _problem_lines(c: Comparison) -> list[str]:
    lines = [f"baseline {label(0)} is not a sound measurement: {p}" for p in c.baseline_problems]
    for i, problems in c.broken.items():
        what = "allowed by --allow-broken" if c.allow_broken or not c.verdicts else "fails the gate"
        lines += [f"candidate {label(i)} is broken ({what}): {p}" for p in problems]
    return lines


def _verdict_summary(c: Comparison) -> str:
    parts = []
    if c.regressions:
        parts.append("REGRESSION: " + ", ".join(f"{v.rule.text} ({label(v.candidate)})" for v in c.regressions))
    if c.verdicts and c.broken and not c.allow_broken:
        parts.append("BROKEN CANDIDATE: " + ", ".join(label(i) for i in c.broken))
    if parts:
        return "; ".join(parts)
    if not c.verdicts:
        return "no rules given (--fail-on): nothing judged"
    return f"no regression ({len(c.verdicts)} rule checks)"


def _aligned(rows: list[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def render_text(c: Comparison) -> str:
    header, body = _table_cells(c)
    lines = [*_legend(c), "", *_aligned([header, *body])]
    if c.verdicts:
        lines += ["", "rules: a regression is past its threshold and significant across runs "
                      f"(one-sided, alpha {c.alpha:g}); the change is the median shift between runs"]
        lines += ["  " + line for line in _aligned([_verdict_line(c, v) for v in c.verdicts])]
    problems = _problem_lines(c)
    lines += ["", *problems] if problems else []
    lines += ["", _verdict_summary(c)]
    return "\n".join(lines)


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def render_markdown(c: Comparison) -> str:
    header, body = _table_cells(c)
    mark = "❌" if c.failed else "✅"
    lines = [f"### bench compare: {mark} {_verdict_summary(c)}", ""]
    lines += [f"- **{line[0]}** `{line[3:]}`" for line in _legend(c)]
    lines += [f"- {line}" for line in _problem_lines(c)]
    lines += ["", _md_row(header), _md_row(["---"] * 2 + ["---:"] * (len(header) - 2)), *map(_md_row, body)]
    if c.verdicts:
        lines += ["", f"Rules (regression = past threshold and significant across runs, one-sided alpha {c.alpha:g}):",
                  "", _md_row(["rule", "sides", "values", "change", "interval", "spread", "p", "test", "verdict"]),
                  _md_row(["---"] * 9)]
        lines += [_md_row(_verdict_line(c, v)) for v in c.verdicts]
    return "\n".join(lines)


def to_json(c: Comparison) -> dict[str, Any]:
    finite = lambda x: None if x is None or (isinstance(x, float) and math.isinf(x)) else x
    return {
        "baseline": str(c.sides[0].path),
        "sides": [{"label": label(i), "path": str(side.path), "runs": [str(r.path) for r in side.runs],
                   "pattern": side.pattern, "mode": side.summary.get("mode"),
                   "rate_target_per_s": side.summary.get("rate_target_per_s"),
                   "valid": all(r.summary.get("valid") for r in side.runs), "problems": side.problems()}
                  for i, side in enumerate(c.sides)],
        "table": [{"metric": row.name, "unit": row.unit, "values": list(row.values),
                   "changes": [finite(x) for x in row.changes]} for row in c.rows],
        "alpha": c.alpha,
        "rules": [v.to_dict() for v in c.verdicts],
        "regression": bool(c.regressions),
        "broken_candidates": {label(i): p for i, p in c.broken.items()},
        "failed": c.failed,
    }


def render(c: Comparison, fmt: str = "text") -> str:
    if fmt == "json":
        return orjson.dumps(to_json(c), option=orjson.OPT_INDENT_2).decode()
    return {"text": render_text, "markdown": render_markdown}[fmt](c)
