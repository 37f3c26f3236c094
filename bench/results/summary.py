"""A run's summary: the one definition of its keys and of its verdict.

A real run (:mod:`bench.run.run`) and a simulated one (:mod:`bench.sim.output`) both build
their summary.json with :func:`build`, its ``latency_ms`` with :func:`latency_ms` and its
``cpu_s`` with :func:`cpu_s`, so they have the same keys, and every reader
(run, simulate, sweep, compare, report) judges one with the same functions:
:func:`clean` (the audit found nothing wrong), :func:`problems` (why a run cannot be
trusted as a measurement) and :func:`exit_code`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from bench.results import files as results, recording, validity

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

    # The audit's problem counts: any of these above zero and the audit is not clean. (Not the
    # faults a workload injects, which summary.json lists under ``faults``.) Records a fault
    # injected on purpose (poison) and their dead letters are not counted in the last three.
    PROBLEMS = ("lost", "stuck", "duplicates", "multiple_terminal", "inconsistent", "unknown_orders", "undecodable",
                "unconsumed", "late_events")

    @property
    def clean(self) -> bool:
        return not any(getattr(self, name) for name in self.PROBLEMS)


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
        "clock": load.clock,  # how the wall clock moved (run.clock); a simulation has none to watch
        "drift": None,  # the first against the last tenth of the window (run.drift): a real run fills it
        "hosts": None,  # services on other hosts (run.remote.describe); None: every process on one host
        "load_workers": None,  # per load worker (run.load_workers): its orders, measured endings, CPU; None: one
        "environment": environment,
        "config": config,
        **extra,
    }


# summary.json's latency_ms key of each histogram the load generator records.
_LATENCY_KEYS = {recording.E2E: "e2e", recording.E2E_COMPLETED: "e2e_completed",
                 recording.E2E_CANCELLED: "e2e_cancelled", recording.SLIP: "schedule_slip"}


def latency_ms(totals: Mapping[str, HdrHistogram], steps: dict[str, dict]) -> dict[str, Any]:
    """summary.json's ``latency_ms``: each load histogram's measured total (``totals``, by the
    names in :data:`bench.results.recording.LOAD_HISTOGRAMS`) in ms, and each step's summary."""
    return {**{key: recording.summary_ms(totals[name]) for name, key in _LATENCY_KEYS.items()}, "steps": steps}


def cpu_s(load_generator_s: float, services_s: Mapping[str, float], broker_s: float | None,
          auditor_s: float | None = None) -> dict[str, Any]:
    """summary.json's ``cpu_s``: CPU seconds of the load generator, of each role's services, of
    the live audit (None for a simulation without its cost in the profile) and of the broker (None when it is not
    the run's to measure), and the harness's total."""
    services = {role: round(seconds, 2) for role, seconds in services_s.items()}
    return {"load_generator": round(load_generator_s, 2), "services": services,
            "auditor": None if auditor_s is None else round(auditor_s, 2),
            "harness_total": round(load_generator_s + (auditor_s or 0.0) + sum(services.values()), 2),
            "broker": None if broker_s is None else round(broker_s, 2)}


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# --- the verdict ------------------------------------------------------------------


def clean(summary: dict[str, Any]) -> bool:
    """No order lost, stuck, duplicated, ended twice or inconsistent."""
    orders = summary.get("orders") or {}
    return not any(orders.get(name) for name in Orders.PROBLEMS)


def problems(summary: dict[str, Any]) -> list[str]:
    """Why this run is not a trustworthy measurement (empty when it is): interrupted,
    did not hold its rate, or the audit found faulty orders."""
    found = []
    if summary.get("interrupted"):
        found.append("interrupted")
    if not summary.get("valid"):
        found.append(f"invalid: {summary.get('invalid_reason') or 'did not hold its rate'}")
    orders = summary.get("orders") or {}
    counted = [f"{orders[name]} {name.replace('_', ' ')}" for name in Orders.PROBLEMS if orders.get(name)]
    if counted:
        found.append("audit: " + ", ".join(counted))
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
# The schema of what the readers (compare, report, sweep, validate, calibrate) use, as a tree: a
# reader that passes :func:`check` never trips on a missing key or a value of the wrong type.

_NUMBER = (int, float)
_NONE = type(None)
_LATENCY_STATS = ("count", "p50", "p90", "p99", "p999", "max", "mean")


@dataclass(frozen=True)
class _Obj:
    """An object with named fields: name -> (node, required)."""

    fields: dict
    nullable: bool = False


@dataclass(frozen=True)
class _Each:
    """An object whose every value is ``node`` (keys are names: steps, roles)."""

    node: Any
    nullable: bool = False


@dataclass(frozen=True)
class _List:
    node: Any
    nullable: bool = False


def _opt(node):
    return (node, False)


def _req(node):
    return (node, True)


_STATS = _Obj({stat: _opt((*_NUMBER, _NONE)) for stat in _LATENCY_STATS})
_SCHEMA = _Obj({
    "mode": _req((str,)),
    "pattern": _req((str,)),
    "valid": _req((bool,)),
    "interrupted": _opt((bool,)),
    "invalid_reason": _opt((str, _NONE)),
    "rate_target_per_s": _req(_NUMBER),
    "rate_offered_per_s": _opt(_NUMBER),
    "rate_achieved_per_s": _req(_NUMBER),
    "duration_s": _opt(_NUMBER),
    "warmup_s": _opt(_NUMBER),
    "orders": _req(_Obj({f.name: (((int,)), f.name in ("started", "lost", "stuck")) for f in fields(Orders)})),
    "latency_ms": _req(_Obj({
        "e2e": _req(_STATS),
        "e2e_completed": _opt(_Obj(_STATS.fields, nullable=True)),
        "e2e_cancelled": _opt(_Obj(_STATS.fields, nullable=True)),
        "schedule_slip": _opt(_Obj(_STATS.fields, nullable=True)),
        "steps": _opt(_Each(_Obj(_STATS.fields, nullable=True))),
    })),
    "messages_per_order": _opt((*_NUMBER, _NONE)),
    "bytes_per_order": _opt((*_NUMBER, _NONE)),
    "timeline": _opt(_Obj({key: _opt(_NUMBER) for key in ("start_wall_s", "measure_start_s", "measure_end_s")})),
    "cpu_s": _opt(_Obj({"harness_total": _opt((*_NUMBER, _NONE)), "broker": _opt((*_NUMBER, _NONE)),
                        "load_generator": _opt((*_NUMBER, _NONE)), "services": _opt(_Each((*_NUMBER, _NONE)))},
                       nullable=True)),
    "cost": _opt(_Obj({"cpu_us_per_order": _opt(_Obj({k: _opt((*_NUMBER, _NONE))
                                                      for k in ("harness", "broker", "total")})),
                       "cores_busy": _opt((*_NUMBER, _NONE)),
                       "batching": _opt(_Obj({"all": _opt(_Each((*_NUMBER, _NONE)))}))}, nullable=True)),
    "faults": _opt(_List(_Obj({"type": _req((str,)), "target": _opt((str, _NONE)), "at_s": _req(_NUMBER),
                               "end_s": _opt((*_NUMBER, _NONE))}))),
    "environment": _opt(_Obj({"git": _opt(_Obj({"commit": _opt((str,)), "dirty": _opt((bool,))}, nullable=True))},
                             nullable=True)),
    "workload": _opt(_Obj({"name": _req((str,))})),
    "hosts": _opt(_Each(_Obj({"agent": _opt((str,)), "instances": _opt(_List((str,))),
                              "shared_monotonic_clock": _opt((bool,))}), nullable=True)),
    "load_workers": _opt(_List(_Obj({"orders": _opt((int,)), "e2e_count": _opt((int,)), "cpu_s": _opt(_NUMBER),
                                     "e2e_p50_ms": _opt((*_NUMBER, _NONE)), "host": _opt((str, _NONE))}),
                               nullable=True)),
    "drift": _opt(_Obj({"tenth_s": _opt(_NUMBER), "changed": _opt(_List((str,))),
                        **{tenth: _opt(_Each((*_NUMBER, _NONE))) for tenth in ("first_tenth", "last_tenth")}},
                       nullable=True)),
})


def _kind(types: tuple[type, ...]) -> str:
    names = {int: "a whole number", float: "a number", str: "text", bool: "true or false", dict: "an object",
             list: "a list", type(None): "null"}
    return " or ".join(dict.fromkeys(names[t] for t in types if not (t is int and float in types)))


def _type_name(value: Any) -> str:
    return _kind((type(value),)) if type(value) in (int, float, str, bool, dict, list, type(None)) else "a value"


def _walk(node: Any, value: Any, name: str) -> str | None:
    """The first problem of ``value`` against ``node``, naming the key path (never the value)."""
    if isinstance(node, tuple):
        bad_bool = isinstance(value, bool) and bool not in node
        if bad_bool or not isinstance(value, node):
            return f"{name} must be {_kind(node)}, got {_type_name(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{name} must be a finite number"
        return None
    if value is None and getattr(node, "nullable", False):
        return None
    if isinstance(node, _List):
        if value is None and node.nullable:
            return None
        if not isinstance(value, list):
            return f"{name} must be a list, got {_type_name(value)}"
        for i, item in enumerate(value):
            if problem := _walk(node.node, item, f"{name}[{i}]"):
                return problem
        return None
    if not isinstance(value, dict):
        return f"{name} must be an object, got {_type_name(value)}"
    if isinstance(node, _Each):
        for key, item in value.items():
            if problem := _walk(node.node, item, f"{name}.{_key_name(key)}"):
                return problem
        return None
    for key, (child, required) in node.fields.items():
        path = f"{name}.{key}" if name else key
        if key not in value:
            if required:
                return f"{path} is missing"
            continue
        if problem := _walk(child, value[key], path):
            return problem
    return None


def _key_name(key: str) -> str:
    return key if len(key) <= 60 and key.isprintable() else "(a key)"


def check(summary: dict[str, Any]) -> str | None:
    """The first field a reader would trip on (missing or of the wrong type), as one line; None if none."""
    return _walk(_SCHEMA, summary, "")


def read(directory: str | Path) -> dict[str, Any]:
    """summary.json of a run directory, checked to hold what the readers use (ResultsError if not)."""
    document = results.read_summary(directory)
    problem = check(document)
    if problem:
        raise results.ResultsError(f"{Path(directory) / results.SUMMARY}: {problem} (not a bench result?)")
    return document
