"""A run's summary: the one definition of its keys and of its verdict.

A real run (:mod:`bench.run`) and a simulated one (:mod:`bench.sim.output`) both build
their summary.json with :func:`build`, so they have the same keys, and every reader
(run, simulate, sweep, compare, report) judges one with the same functions:
:func:`clean` (the audit found nothing wrong), :func:`problems` (why a run cannot be
trusted as a measurement) and :func:`exit_code`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from bench import results, validity

EXIT_OK, EXIT_AUDIT, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 3, 130


@dataclass(frozen=True)
class Orders:
    """What the audit found, in orders: every started order is completed, cancelled, lost or stuck."""

    started: int
    completed: int
    cancelled: int
    lost: int
    stuck: int
    duplicates: int  # an effect applied more than once
    multiple_terminal: int  # ended more than once
    compensated_early: int  # consistently cancelled although no step failed (a timeout): not a fault
    inconsistent: int
    # Records, not orders: what the log holds that no started order explains.
    unknown_orders: int = 0  # orderIds in the log that the load generator never started
    undecodable: int = 0  # records that are not order events
    unconsumed: int = 0  # records on topics nobody reads (dead letters among them)
    late_events: int = 0  # step events read after the live audit had judged their order

    # Any of these above zero and the audit is not clean. Records a fault injected on
    # purpose (poison) and their dead letters are not counted in the last three.
    FAULTS = ("lost", "stuck", "duplicates", "multiple_terminal", "inconsistent", "unknown_orders", "undecodable",
              "unconsumed", "late_events")

    @property
    def clean(self) -> bool:
        return not any(getattr(self, name) for name in self.FAULTS)


def build(*, mode: str, pattern: str, workload, load, orders: Orders, latency_ms: dict[str, Any],
          messages_per_order: float | None, bytes_per_order: float | None, audit: dict[str, Any],
          cpu_s: dict[str, Any], timeline: dict[str, float], environment: dict[str, Any], config: dict[str, Any],
          **extra: Any) -> dict[str, Any]:
    """The summary of a run, real or simulated. ``load`` is the load generator's result
    (real or simulated: the same fields); whether the run held its rate is judged here,
    the same way for both. ``extra`` holds what only one kind of run has (cost, faults,
    simulation)."""
    window_s = load.measure_end_s - load.measure_start_s
    valid, reason = validity.judge(load, workload.rate_per_s, latency_ms["schedule_slip"]["p99"],
                                   latency_ms["e2e"]["p50"])
    return {
        "mode": mode,
        "pattern": pattern,
        "workload": workload.to_dict(),
        "rate_target_per_s": workload.rate_per_s,
        "rate_offered_per_s": round(load.offered_in_window / window_s, 1),
        "rate_achieved_per_s": round(load.finished_in_window / window_s, 1),
        "duration_s": workload.duration_s,
        "warmup_s": workload.warmup_s,
        "valid": valid,
        "invalid_reason": reason,
        "interrupted": load.interrupted,
        "clean": orders.clean,
        "orders": asdict(orders),
        "latency_ms": latency_ms,
        "messages_per_order": _round(messages_per_order, 2),
        "bytes_per_order": _round(bytes_per_order, 1),
        "audit": {**audit, "clean": orders.clean},
        "cpu_s": cpu_s,
        "timeline": timeline,
        "environment": environment,
        "config": config,
        **extra,
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# --- the verdict ------------------------------------------------------------------


def clean(summary: dict[str, Any]) -> bool:
    """No order lost, stuck, duplicated, ended twice or inconsistent."""
    orders = summary.get("orders") or {}
    return not any(orders.get(name) for name in Orders.FAULTS)


def problems(summary: dict[str, Any]) -> list[str]:
    """Why this run is not a trustworthy measurement (empty when it is): interrupted,
    did not hold its rate, or the audit found faulty orders."""
    found = []
    if summary.get("interrupted"):
        found.append("interrupted")
    if not summary.get("valid"):
        found.append(f"invalid: {summary.get('invalid_reason') or 'did not hold its rate'}")
    orders = summary.get("orders") or {}
    faults = [f"{orders[name]} {name.replace('_', ' ')}" for name in Orders.FAULTS if orders.get(name)]
    if faults:
        found.append("audit: " + ", ".join(faults))
    return found


def exit_code(summary: dict[str, Any]) -> int:
    """130 interrupted; 1 the audit found faulty orders; 3 the run did not hold its rate; 0 fine."""
    if summary.get("interrupted"):
        return EXIT_INTERRUPTED
    if not clean(summary):
        return EXIT_AUDIT
    if not summary.get("valid"):
        return EXIT_INVALID
    return EXIT_OK


def worst_exit_code(codes: list[int]) -> int:
    """One exit code for several runs (a series): interrupted, then audit, then invalid."""
    for code in (EXIT_INTERRUPTED, EXIT_AUDIT, EXIT_INVALID):
        if code in codes:
            return code
    return EXIT_OK


# --- reading ---------------------------------------------------------------------------

_NUMBER = (int, float)
_LATENCY_STATS = ("count", "p50", "p90", "p99", "p999", "max", "mean")
# (keys, allowed types, required) of the fields the readers use.
_FIELDS: tuple[tuple[tuple[str, ...], tuple[type, ...], bool], ...] = (
    (("mode",), (str,), True),
    (("pattern",), (str,), True),
    (("valid",), (bool,), True),
    (("interrupted",), (bool,), False),
    (("invalid_reason",), (str, type(None)), False),
    (("rate_target_per_s",), _NUMBER, True),
    (("rate_offered_per_s",), _NUMBER, False),
    (("rate_achieved_per_s",), _NUMBER, True),
    (("duration_s",), _NUMBER, False),
    (("warmup_s",), _NUMBER, False),
    (("orders",), (dict,), True),
    (("latency_ms",), (dict,), True),
    (("latency_ms", "e2e"), (dict,), True),
    (("latency_ms", "steps"), (dict,), False),
    (("messages_per_order",), (*_NUMBER, type(None)), False),
    (("bytes_per_order",), (*_NUMBER, type(None)), False),
    (("timeline",), (dict,), False),
    (("cost",), (dict, type(None)), False),
    (("faults",), (list,), False),
    *((("orders", f.name), (int,), f.name in ("started", "lost", "stuck")) for f in fields(Orders)),
    *((("latency_ms", "e2e", stat), (*_NUMBER, type(None)), False) for stat in _LATENCY_STATS),
    *((("timeline", key), _NUMBER, False) for key in ("start_wall_s", "measure_start_s", "measure_end_s")),
)


def _kind(types: tuple[type, ...]) -> str:
    names = {int: "a whole number", float: "a number", str: "text", bool: "true or false", dict: "an object",
             list: "a list", type(None): "null"}
    return " or ".join(dict.fromkeys(names[t] for t in types if not (t is int and float in types)))


def check(summary: dict[str, Any]) -> str | None:
    """The first field a reader would trip on (missing or of the wrong type), as one line; None if none."""
    for keys, types, required in _FIELDS:
        value: Any = summary
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                value = KeyError
                break
            value = value[key]
        name = ".".join(keys)
        if value is KeyError:
            if required:
                return f"{name} is missing"
            continue
        bad_bool = isinstance(value, bool) and bool not in types
        if bad_bool or not isinstance(value, types):
            return f"{name} must be {_kind(types)}, got {value!r:.40}"
    return None


def read(directory: str | Path) -> dict[str, Any]:
    """summary.json of a run directory, checked to hold what the readers use (ResultsError if not)."""
    document = results.read_summary(directory)
    problem = check(document)
    if problem:
        raise results.ResultsError(f"{Path(directory) / results.SUMMARY}: {problem} (not a bench result?)")
    return document
