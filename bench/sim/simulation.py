"""One simulated run, from request to result directory: what `bench simulate` calls."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.results import files as results, summary as summary_mod
from bench.patterns.base import Pattern
from bench.sim import output
from bench.sim.model import Scenario, simulate
from bench.sim.profile import Profile
from bench.flow.workload import Workload


@dataclass(frozen=True)
class SimRequest:
    pattern: Pattern
    workload: Workload
    profile: Profile
    placement: str = "single"
    brokers: int | None = None
    output: Path | None = None
    results_base: Path = Path("results")


@dataclass
class SimOutcome:
    directory: Path
    summary: dict
    exit_code: int


def run(request: SimRequest, echo: Callable[[str], None] = print) -> SimOutcome:
    """Simulate and write the result directory (the same format as ``bench run``'s)."""
    w = request.workload
    scenario = Scenario(request.pattern, w, request.profile, request.placement, request.brokers)
    out = request.output or results.result_dir(f"{request.pattern.name}-sim", w.rate_per_s, base=request.results_base)
    echo(f"simulating {request.pattern.name}: {w.arrival} {w.rate_per_s:g} orders/s for {w.duration_s:g}s after "
         f"{w.warmup_s:g}s warm-up, {scenario.broker_count} broker(s), placement {request.placement} -> {out}")
    start_wall_s = time.time()
    began = time.perf_counter()
    result = simulate(scenario)
    wall_s = time.perf_counter() - began
    summary = output.write(out, scenario, result, start_wall_s, wall_s)
    echo(f"simulated {result.elapsed_s:.1f}s in {wall_s:.1f}s of wall time")
    return SimOutcome(out, summary, summary_mod.exit_code(summary))
