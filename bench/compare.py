"""Comparing result directories: a side-by-side table, and regression rules judged with statistics.

A rule such as ``p99:+10%`` names a metric and how far it may get worse. A candidate
regresses on a rule only when the change is past the threshold *and* statistically
significant: the per-interval values of the metric (the p99 of each 1 s histogram in
the ``.hlog``, or each second's finished orders) must be shifted the worse way by a
one-sided Mann-Whitney U test, as asv's ``compare`` does. Two single numbers never
decide alone. Metrics that are counts, not timings (messages per order, lost orders),
have no per-interval samples and are judged by their threshold only.

The first directory is the baseline; every other one is compared with it.
"""
from __future__ import annotations

import csv
import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from hdrh.histogram import HdrHistogram

from bench.recording import read_hlog, summary_ms
from bench.results import TIMESERIES, ResultsError, read_summary

ALPHA = 0.05  # one-sided significance level of the Mann-Whitney U test
MIN_INTERVALS = 3  # fewer per-interval samples per side: significance cannot be judged
EXACT_MAX_N = 50  # exact U distribution up to this many samples per side (without ties)
FORMATS = ("text", "markdown", "json")
STATS = ("p50", "p90", "p99", "p999", "max", "mean")
TABLE_STATS = ("p50", "p90", "p99", "p999", "max")


class RuleError(ValueError):
    """A --fail-on rule that cannot be used; the message is one line."""


# --- one result directory ---------------------------------------------------


@dataclass
class Result:
    """A result directory: its summary, and its histograms read on demand."""

    path: Path
    summary: dict[str, Any]
    _stats: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, path: str | Path) -> Result:
        return cls(Path(path), read_summary(path))

    @property
    def pattern(self) -> str:
        return str(self.summary.get("pattern", "?"))

    def histograms(self, hlog: str) -> list[HdrHistogram]:
        """Every interval of ``hlog`` (e.g. ``"e2e.hlog"``); all hold measured values only."""
        path = self.path / hlog
        if not path.exists():
            raise ResultsError(f"{path}: missing")
        try:
            intervals = read_hlog(path)
        except Exception as err:  # hdrh raises whatever its decoder trips on; name the file, exit 2
            kind = f"{type(err).__module__}.{type(err).__name__}".removeprefix("builtins.")
            raise ResultsError(f"{path}: not a readable HdrHistogram log: {kind}: {err}") from None
        if not intervals:  # a run writes one interval a second, empty or not
            raise ResultsError(f"{path}: holds no intervals (truncated?)")
        return intervals

    def interval_stats(self, hlog: str) -> list[dict[str, Any]]:
        """``summary_ms`` of each non-empty interval of ``hlog`` inside the measurement window."""
        if hlog not in self._stats:
            self._stats[hlog] = [summary_ms(h) for h in self._window(self.histograms(hlog)) if h.get_total_count()]
        return self._stats[hlog]

    def finished_per_s(self) -> list[float]:
        """Orders finished in each second of the measurement window, from timeseries.csv
        (or, for a run without it, the count of each interval of e2e.hlog)."""
        path = self.path / TIMESERIES
        if not path.exists():
            return [float(s["count"]) for s in self.interval_stats("e2e.hlog")]
        start = float(self.summary.get("warmup_s") or 0.0)
        end = start + float(self.summary.get("duration_s") or math.inf)
        try:
            with path.open(newline="", encoding="utf-8") as rows:
                return [float(row["finished"]) for row in csv.DictReader(rows) if start < float(row["t_s"]) <= end]
        except (OSError, KeyError, ValueError, TypeError) as err:
            raise ResultsError(f"{path}: cannot read: {err}") from None

    def _window(self, intervals: list[HdrHistogram]) -> list[HdrHistogram]:
        timeline = self.summary.get("timeline") or {}
        start, end = timeline.get("measure_start_s"), timeline.get("measure_end_s")
        if start is None or end is None:
            return intervals
        # By midpoint: the last interval may run a little past the window into the drain.
        mid_s = lambda h: (h.get_start_time_stamp() + h.get_end_time_stamp()) / 2000.0
        return [h for h in intervals if start <= mid_s(h) < end]


# --- metrics ------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """A number read from a result; ``samples`` gives its per-interval values for the test."""

    name: str
    unit: str
    higher_is_worse: bool
    value: Callable[[Result], float | None]
    samples: Callable[[Result], list[float]] | None = None

    @property
    def worse_sign(self) -> str:
        return "+" if self.higher_is_worse else "-"


def _get(summary: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(summary, dict):
            return None
        summary = summary.get(key)
    return summary


def _latency(name: str, hlog: str, keys: tuple[str, ...], stat: str) -> Metric:
    return Metric(name, "ms", True, lambda r: _get(r.summary, *keys, stat),
                  lambda r: [s[stat] for s in r.interval_stats(hlog)])


# Latency histograms other than steps: metric prefix -> (.hlog file, keys in summary.json).
HISTOGRAMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "e2e": ("e2e.hlog", ("latency_ms", "e2e")),
    "e2e_completed": ("e2e-completed.hlog", ("latency_ms", "e2e_completed")),
    "e2e_cancelled": ("e2e-cancelled.hlog", ("latency_ms", "e2e_cancelled")),
    "slip": ("slip.hlog", ("latency_ms", "schedule_slip")),
}


def _registry() -> dict[str, Metric]:
    metrics = {
        "throughput": Metric("throughput", "/s", False, lambda r: r.summary.get("rate_achieved_per_s"),
                             Result.finished_per_s),
        "messages_per_order": Metric("messages_per_order", "msgs", True, lambda r: r.summary.get("messages_per_order")),
        "bytes_per_order": Metric("bytes_per_order", "B", True, lambda r: r.summary.get("bytes_per_order")),
        "cpu": Metric("cpu", "s", True, lambda r: _get(r.summary, "cpu_s", "harness_total")),
    }
    for count in ("lost", "stuck", "duplicates", "inconsistent"):
        metrics[count] = Metric(count, "orders", True, lambda r, c=count: _get(r.summary, "orders", c))
    for prefix, (hlog, keys) in HISTOGRAMS.items():
        for stat in STATS:
            metrics[f"{prefix}.{stat}"] = _latency(f"{prefix}.{stat}", hlog, keys, stat)
    for stat in STATS:  # the bare percentile means end-to-end latency
        metrics[stat] = _latency(stat, *HISTOGRAMS["e2e"], stat)
    return metrics


METRICS: dict[str, Metric] = _registry()
_STEP = re.compile(r"step\.([A-Za-z0-9_-]+)\.(" + "|".join(STATS) + ")")


def metric(name: str) -> Metric:
    """The metric called ``name``: one of :data:`METRICS`, or ``step.<step>.<stat>``."""
    if name in METRICS:
        return METRICS[name]
    if match := _STEP.fullmatch(name):
        step, stat = match.groups()
        return _latency(name, f"step-{step}.hlog", ("latency_ms", "steps", step), stat)
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


# --- judging --------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    rule: Rule
    candidate: int  # index into Comparison.results (0 is the baseline)
    baseline_value: float
    value: float
    change: float  # relative, (value - baseline) / baseline; inf from a zero baseline
    past_threshold: bool
    p_value: float | None  # None: no per-interval samples
    intervals: tuple[int, int]  # samples in baseline and candidate
    significant: bool

    @property
    def regression(self) -> bool:
        return self.past_threshold and self.significant

    @property
    def method(self) -> str:
        if self.p_value is not None:
            return f"Mann-Whitney U over {self.intervals[0]} vs {self.intervals[1]} intervals"
        if self.rule.metric.samples is None:
            return "a count: threshold only"
        return f"{min(self.intervals)} intervals, under {MIN_INTERVALS}: threshold only"

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.text, "metric": self.rule.metric.name, "unit": self.rule.metric.unit,
                "candidate": self.candidate, "baseline_value": self.baseline_value, "value": self.value,
                "change": None if math.isinf(self.change) else self.change, "past_threshold": self.past_threshold,
                "p_value": self.p_value, "intervals": list(self.intervals), "significant": self.significant,
                "method": self.method, "regression": self.regression}


def _relative(base: float, value: float) -> float:
    if base == 0:
        return 0.0 if value == 0 else math.copysign(math.inf, value)
    return (value - base) / abs(base)


def _value(m: Metric, result: Result) -> float:
    value = m.value(result)
    if value is None:
        raise ResultsError(f"{result.path}: has no value for {m.name}")
    return float(value)


def judge(rule: Rule, baseline: Result, candidate: Result, index: int, alpha: float = ALPHA) -> Verdict:
    m = rule.metric
    base, value = _value(m, baseline), _value(m, candidate)
    worse = 1.0 if m.higher_is_worse else -1.0
    change = _relative(base, value)
    past = worse * (change if rule.relative else value - base) > rule.threshold
    p_value, sizes = None, (0, 0)
    if m.samples is not None:
        before, after = m.samples(baseline), m.samples(candidate)
        sizes = (len(before), len(after))
        if min(sizes) >= MIN_INTERVALS:
            p_value = mann_whitney_p([worse * v for v in after], [worse * v for v in before])
    significant = p_value < alpha if p_value is not None else True
    return Verdict(rule, index, base, value, change, past, p_value, sizes, significant)


@dataclass(frozen=True)
class Row:
    """One line of the side-by-side table: a value per result and its change against the first."""

    name: str
    unit: str
    values: tuple[Any, ...]

    @property
    def changes(self) -> tuple[float | None, ...]:
        base = self.values[0]
        numeric = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
        return tuple(_relative(base, v) if numeric(base) and numeric(v) else None for v in self.values)


def side_by_side(results: Sequence[Result]) -> list[Row]:
    """Pattern, mode, rates, validity, e2e and per-step latency, cost and audit counts of each result."""
    s = [r.summary for r in results]
    row = lambda name, unit, f: Row(name, unit, tuple(f(x) for x in s))
    rows = [
        row("pattern", "", lambda x: x.get("pattern")),
        row("mode", "", lambda x: x.get("mode")),
        row("valid", "", lambda x: "yes" if x.get("valid") else f"NO: {x.get('invalid_reason')}"),
        row("rate target", "/s", lambda x: x.get("rate_target_per_s")),
        row("rate offered", "/s", lambda x: x.get("rate_offered_per_s")),
        row("throughput", "/s", lambda x: x.get("rate_achieved_per_s")),
    ]
    rows += [row(f"e2e {stat}", "ms", lambda x, st=stat: _get(x, "latency_ms", "e2e", st)) for stat in TABLE_STATS]
    steps = step_names(results)
    rows += [row(f"step.{step}.{stat}", "ms", lambda x, sp=step, st=stat: _get(x, "latency_ms", "steps", sp, st))
             for step in steps for stat in TABLE_STATS]
    rows += [row("messages/order", "msgs", lambda x: x.get("messages_per_order")),
             row("bytes/order", "B", lambda x: x.get("bytes_per_order"))]
    rows += [row(count, "orders", lambda x, c=count: _get(x, "orders", c))
             for count in ("lost", "stuck", "duplicates", "inconsistent")]
    return rows


STEP_ORDER = ("order", "orchestrator", "payment", "inventory", "shipping", "refund", "release")


def step_names(results: Sequence[Result]) -> list[str]:
    """Every step of any result, in saga order, then any others by name."""
    found = {step for r in results for step in (_get(r.summary, "latency_ms", "steps") or {})}
    return [s for s in STEP_ORDER if s in found] + sorted(found - set(STEP_ORDER))


@dataclass(frozen=True)
class Comparison:
    results: tuple[Result, ...]
    rows: tuple[Row, ...]
    verdicts: tuple[Verdict, ...]
    alpha: float

    @property
    def regressions(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.regression)


def compare(dirs: Sequence[str | Path], rules: Sequence[Rule] = (), alpha: float = ALPHA) -> Comparison:
    """Read every directory (raising ResultsError for one that cannot be used) and judge
    each rule for each directory after the first against the first."""
    if len(dirs) < 2:
        raise ResultsError("compare needs at least two result directories: the first is the baseline")
    results = tuple(Result.load(d) for d in dirs)
    verdicts = tuple(judge(rule, results[0], cand, i, alpha)
                     for i, cand in enumerate(results[1:], start=1) for rule in rules)
    return Comparison(results, tuple(side_by_side(results)), verdicts, alpha)


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
    for i in range(len(c.results)):
        header += [label(i)] if i == 0 else [label(i), f"vs {label(0)}"]
    body = []
    for row in c.rows:
        cells = [row.name, row.unit]
        for i, (value, change) in enumerate(zip(row.values, row.changes)):
            cells += [fmt_value(value)] if i == 0 else [fmt_value(value), fmt_change(change)]
        body.append(cells)
    return header, body


def _verdict_line(c: Comparison, v: Verdict) -> tuple[str, ...]:
    unit = v.rule.metric.unit
    p = "-" if v.p_value is None else f"{v.p_value:.3g}"
    status = "REGRESSION" if v.regression else ("not significant" if v.past_threshold else "ok")
    return (v.rule.text, f"{label(v.candidate)} vs {label(0)}",
            f"{fmt_value(v.baseline_value)} -> {fmt_value(v.value)} {unit}", fmt_change(v.change),
            f"p={p}", v.method, status)


def _legend(c: Comparison) -> list[str]:
    return [f"{label(i)}  {r.path}  ({r.pattern}, {r.summary.get('mode', '?')}, "
            f"{fmt_value(r.summary.get('rate_target_per_s'))}/s)" for i, r in enumerate(c.results)]


def _verdict_summary(c: Comparison) -> str:
    if not c.verdicts:
        return "no rules given (--fail-on): nothing judged"
    if not c.regressions:
        return f"no regression ({len(c.verdicts)} rule checks)"
    names = ", ".join(f"{v.rule.text} ({label(v.candidate)})" for v in c.regressions)
    return f"REGRESSION: {names}"


def _aligned(rows: list[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def render_text(c: Comparison) -> str:
    header, body = _table_cells(c)
    lines = [*_legend(c), "", *_aligned([header, *body])]
    if c.verdicts:
        lines += ["", f"rules: a regression is past its threshold and significant (one-sided, alpha {c.alpha:g})"]
        lines += ["  " + line for line in _aligned([_verdict_line(c, v) for v in c.verdicts])]
    lines += ["", _verdict_summary(c)]
    return "\n".join(lines)


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def render_markdown(c: Comparison) -> str:
    header, body = _table_cells(c)
    mark = "❌" if c.regressions else "✅"
    lines = [f"### bench compare: {mark} {_verdict_summary(c)}", ""]
    lines += [f"- **{line[0]}** `{line[3:]}`" for line in _legend(c)]
    lines += ["", _md_row(header), _md_row(["---"] * 2 + ["---:"] * (len(header) - 2)), *map(_md_row, body)]
    if c.verdicts:
        lines += ["", f"Rules (regression = past threshold and significant, one-sided alpha {c.alpha:g}):", "",
                  _md_row(["rule", "runs", "values", "change", "p", "test", "verdict"]), _md_row(["---"] * 7)]
        lines += [_md_row(_verdict_line(c, v)) for v in c.verdicts]
    return "\n".join(lines)


def to_json(c: Comparison) -> dict[str, Any]:
    finite = lambda x: None if x is None or (isinstance(x, float) and math.isinf(x)) else x
    return {
        "baseline": str(c.results[0].path),
        "runs": [{"label": label(i), "path": str(r.path), "pattern": r.pattern, "mode": r.summary.get("mode"),
                  "rate_target_per_s": r.summary.get("rate_target_per_s"), "valid": r.summary.get("valid")}
                 for i, r in enumerate(c.results)],
        "table": [{"metric": row.name, "unit": row.unit, "values": list(row.values),
                   "changes": [finite(x) for x in row.changes]} for row in c.rows],
        "alpha": c.alpha,
        "rules": [v.to_dict() for v in c.verdicts],
        "regression": bool(c.regressions),
    }


def render(c: Comparison, fmt: str = "text") -> str:
    if fmt == "json":
        return orjson.dumps(to_json(c), option=orjson.OPT_INDENT_2).decode()
    return {"text": render_text, "markdown": render_markdown}[fmt](c)
