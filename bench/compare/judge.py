"""Judging one rule for a candidate side against the baseline.

The metric is taken once per run (its p99 over the run's measurement window, its
throughput, ...), so a series gives one value per run. A candidate regresses on a rule
when the change is past the threshold *and* significant across runs: the candidate's run
values are shifted the worse way by a one-sided Mann-Whitney U test. The change is the
Hodges-Lehmann shift (the median of every candidate-minus-baseline difference) with its
distribution-free confidence interval.

Why runs and not the seconds inside one run: the intervals of one run share its broker
state, JIT, page cache and neighbours, so a test over them finds that two runs differ,
which any two runs do. With too few runs per side for the test to reach significance
(one run per side, or 3 + 3 at alpha 0.05), a rule is judged by its threshold alone and
the verdict says so. Counts (lost orders, ...) are judged by their threshold on the worst run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.compare.rules import Rule
from bench.compare.sides import Side
from bench.compare.stats import hodges_lehmann, mann_whitney_p, min_p_value, relative_change, shift_interval, spread


ALPHA = 0.05  # one-sided significance level of the Mann-Whitney U test


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
                interval = (relative_change(base, base + low), relative_change(base, base + high), confidence)
            method = f"Mann-Whitney U over {k} vs {n} runs"
        elif n == k == 1:
            method = "one run per side cannot show significance: threshold only"
        else:
            method = f"{k} vs {n} runs cannot reach p < {alpha:g} (4 + 4 can): threshold only"
    change = relative_change(base, base + shift)
    past = worse * (change if rule.relative else shift) > rule.threshold
    significant = p_value < alpha if p_value is not None else True
    return Verdict(rule, index, tuple(before), tuple(after), base, value, shift, change, interval, past,
                   p_value, significant, method)
