"""The metrics a comparison reads from each run's summary, by name: the registry behind
``--fail-on`` rules and the side-by-side table."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.errors import BadInput
from bench.results import summary as run_summary


STATS = ("p50", "p90", "p99", "p999", "max", "mean")


class RuleError(BadInput):
    """A --fail-on rule that cannot be used; the message is one line."""


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


def summary_value(summary: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(summary, dict):
            return None
        summary = summary.get(key)
    return summary


def _latency(name: str, keys: tuple[str, ...], stat: str) -> Metric:
    return Metric(name, "ms", True, lambda s: summary_value(s, *keys, stat))


# Latency histograms other than steps: metric prefix -> keys in summary.json.
HISTOGRAMS: dict[str, tuple[str, ...]] = {
    "e2e": ("latency_ms", "e2e"),
    "e2e_completed": ("latency_ms", "e2e_completed"),
    "e2e_cancelled": ("latency_ms", "e2e_cancelled"),
    "slip": ("latency_ms", "schedule_slip"),
}
COUNTS = run_summary.Orders.PROBLEMS  # judged on the worst run, by threshold


def _registry() -> dict[str, Metric]:
    metrics = {
        "throughput": Metric("throughput", "/s", False, lambda s: s.get("rate_achieved_per_s")),
        "messages_per_order": Metric("messages_per_order", "msgs", True, lambda s: s.get("messages_per_order")),
        "bytes_per_order": Metric("bytes_per_order", "B", True, lambda s: s.get("bytes_per_order")),
        "cpu": Metric("cpu", "s", True, lambda s: summary_value(s, "cpu_s", "harness_total")),
        "cpu_per_order": Metric("cpu_per_order", "us", True, lambda s: summary_value(s, "cost", "cpu_us_per_order", "total")),
    }
    for count in COUNTS:
        metrics[count] = Metric(count, "orders", True, lambda s, c=count: summary_value(s, "orders", c), count=True)
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
