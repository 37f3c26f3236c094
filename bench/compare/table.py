"""The side-by-side table: one row per figure, a value per side (a series shows the median
of its runs) and its change against the baseline."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.compare.metrics import COUNTS, summary_value
from bench.compare.sides import Result, Side
from bench.compare.stats import relative_change
from bench.flow import saga as saga_mod


TABLE_STATS = ("p50", "p90", "p99", "p999", "max")


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
        return tuple(relative_change(base, v) if numeric(base) and numeric(v) else None for v in self.values)


def _median(values: list[Any]) -> Any:
    """The median of a side's run values; the first value when they are not all numbers."""
    if not values or any(v is None or isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        return values[0] if values else None
    return float(np.median(values)) if len(values) > 1 else values[0]


def _saga(summary: dict) -> str:
    """The run's saga, one line (a run from before sagas were defined in the workload ran the default)."""
    raw = summary_value(summary, "workload", "saga")
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
    rows += [row(f"e2e {stat}", "ms", lambda x, st=stat: summary_value(x, "latency_ms", "e2e", st)) for stat in TABLE_STATS]
    steps = step_names([r for side in sides for r in side.runs])
    rows += [row(f"step.{step}.{stat}", "ms", lambda x, sp=step, st=stat: summary_value(x, "latency_ms", "steps", sp, st))
             for step in steps for stat in TABLE_STATS]
    rows += [row("messages/order", "msgs", lambda x: x.get("messages_per_order")),
             row("bytes/order", "B", lambda x: x.get("bytes_per_order")),
             row("CPU/order", "us", lambda x: summary_value(x, "cost", "cpu_us_per_order", "total"))]
    rows += [Row(count, "orders", tuple(max((summary_value(r.summary, "orders", count) or 0) for r in side.runs)
                                        if any(summary_value(r.summary, "orders", count) is not None for r in side.runs)
                                        else None for side in sides))
             for count in COUNTS]
    return rows


def step_names(results: Sequence[Result]) -> list[str]:
    """Every step of any result, in the order the results list them (each run writes its steps
    in its saga's order: bench.patterns.base.Topology.step_names)."""
    found: dict[str, None] = {}
    for r in results:
        found.update(dict.fromkeys(summary_value(r.summary, "latency_ms", "steps") or {}))
    return list(found)
