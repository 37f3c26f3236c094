"""A simulated run's result directory, in the same format as ``bench run``'s.

summary.json (``mode: simulation``), ``e2e``/``e2e-completed``/``e2e-cancelled``/``slip``
``.hlog`` and ``.hgrm``, a ``step-<name>.hlog`` per step and timeseries.csv, so
``bench compare`` and ``bench report`` read it as they read a real run.
Interval timestamps are seconds of simulated time from the run's start.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from hdrh.histogram import HdrHistogram

from bench.results import files as results, summary
from bench.flow.saga import E2E
from bench.results.recording import (E2E_CANCELLED, E2E_COMPLETED, SLIP, hgrm_file, hlog_file, merged, summary_ms,
                                     write_hgrm, write_intervals)
from bench.results.step_logs import write_step_log
from bench.sim.histograms import per_second
from bench.sim.model import Scenario, SimResult

US = 1e6


def write(directory: Path, scenario: Scenario, result: SimResult, start_wall_s: float, wall_s: float) -> dict:
    """Write every file of the result dir; returns the summary."""
    directory.mkdir(parents=True, exist_ok=True)
    seconds = max(1, math.ceil(result.elapsed_s))
    end_s, e2e_s, completed = result.e2e
    series = {
        E2E: per_second(end_s, e2e_s * US, seconds),
        E2E_COMPLETED: per_second(end_s[completed], e2e_s[completed] * US, seconds),
        E2E_CANCELLED: per_second(end_s[~completed], e2e_s[~completed] * US, seconds),
        SLIP: per_second(result.slip[0], result.slip[1] * US, seconds),
    }
    totals = {}
    for name, hists in series.items():
        write_intervals(directory / hlog_file(name), [(k, k + 1, h) for k, h in enumerate(hists)], start_wall_s, name)
        totals[name] = merged(hists)
        write_hgrm(totals[name], directory / hgrm_file(name))
    steps = _write_steps(directory, scenario, result, start_wall_s)
    _write_timeseries(directory, result, series[E2E])
    summary = _summary(scenario, result, totals, steps, start_wall_s, wall_s)
    results.write_summary(directory, summary)
    return summary


def _write_steps(directory: Path, scenario: Scenario, result: SimResult, start_wall_s: float) -> dict[str, dict]:
    w = scenario.workload
    names = [s for s in scenario.topology.step_names() if s != E2E]
    summaries = {}
    for step in names:
        ends = np.frombuffer(result.steps.ends[step]) if step in result.steps.ends else np.empty(0)
        latencies = np.frombuffer(result.steps.latencies[step]) if step in result.steps.latencies else np.empty(0)
        inside = (ends >= w.warmup_s) & (ends < w.warmup_s + w.duration_s)
        ends, latencies = ends[inside], latencies[inside]
        hists = per_second(ends, latencies * US)
        intervals = [(k, k + 1, h) for k, h in enumerate(hists) if h.get_total_count()]
        summaries[step] = write_step_log(directory, step, intervals, start_wall_s)
    return summaries


def _write_timeseries(directory: Path, result: SimResult, e2e: list[HdrHistogram]) -> None:
    """One row per second, ``p99_ms`` of the orders measured that second, as the real run writes it."""
    with results.TimeseriesWriter(directory / results.TIMESERIES) as out:
        for second in result.load.seconds:
            k = int(second.t_s)
            p99 = summary_ms(e2e[k - 1])["p99"] if 0 < k <= len(e2e) else None
            out.write_row(second.t_s, second.offered, second.finished, second.in_flight, second.backlog, p99)


def _summary(scenario: Scenario, result: SimResult, totals: dict[str, HdrHistogram], steps: dict,
             start_wall_s: float, wall_s: float) -> dict:
    w, load = scenario.workload, result.load
    started = load.started_count
    completed = sum(1 for status in result.outcomes.values() if status == "completed")
    cancelled = load.finished_count - completed
    unfinished = started - load.finished_count
    # The model loses nothing (it has no broker to lose a record); an order it never finished
    # is stuck. Its only duplicate is an order that ended twice, which took its last step twice.
    orders = summary.Orders(started=started, completed=completed, cancelled=cancelled, lost=0, stuck=unfinished,
                            duplicates=result.duplicates, multiple_terminal=result.duplicates, compensated_early=0,
                            inconsistent=result.unexpected_outcomes)
    messages = sum(result.messages.values())
    total_bytes = sum(count * result.bytes_per_message.get(topic, 0.0) for topic, count in result.messages.items())
    per_order = messages / started if started else None
    bytes_per_order = total_bytes / started if started else None
    topology = scenario.topology
    services = {role: result.cpu_s.get(role, 0.0) for role in topology.roles}
    audit = {
        "simulated": True,
        "orders_started": started, "completed": completed, "cancelled": cancelled, "lost": 0, "stuck": unfinished,
        "finished": load.finished_count, "unfinished": unfinished, "multiple_terminal": result.duplicates,
        "unexpected_outcome": result.unexpected_outcomes, "inconsistent": result.unexpected_outcomes,
        "compensations": {s.name: len(result.steps.ends.get(s.undo_span, ()))
                          for s in topology.saga.steps if s.compensable},
        "messages_per_topic": dict(result.messages),
        "messages_per_order": per_order, "bytes_per_order": bytes_per_order,
    }
    profile = scenario.profile
    return summary.build(
        mode="simulation", pattern=scenario.pattern.name, workload=w, load=load, orders=orders,
        latency_ms=summary.latency_ms(totals, steps),
        messages_per_order=per_order, bytes_per_order=bytes_per_order, audit=audit,
        cpu_s=summary.cpu_s(result.cpu_s.get("load_generator", 0.0), services, result.cpu_s.get("broker"),
                          result.cpu_s.get("auditor")),
        timeline={"start_wall_s": start_wall_s, "measure_start_s": start_wall_s + w.warmup_s,
                  "measure_end_s": start_wall_s + w.warmup_s + w.duration_s},
        environment={**results.environment(None), "bootstrap_servers": None},
        config={"client": dict(w.client), "kafka_config": {}, "kafka_config_file": None},
        simulation={
            "profile": str(profile.source) if profile.source else None,
            "profile_measured": dict(profile.measured),
            "placement": scenario.placement,
            "brokers": scenario.broker_count,
            "cores_per_host": profile.cores if scenario.placement == "single" else None,
            "mean_cpu_utilisation": round(result.mean_utilisation, 3) if result.mean_utilisation is not None else None,
            "simulated_s": round(result.elapsed_s, 3),
            "wall_s": round(wall_s, 3),
            "processed": result.processed,
            "batching": result.batching,
        },
    )
