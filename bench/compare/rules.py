"""Regression rules parsed from strings such as ``p99:+10%``: a metric and how far it may get worse."""
from __future__ import annotations

import re
from dataclasses import dataclass

from bench.compare.metrics import Metric, RuleError, metric


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
