"""How fast the model runs: simulated seconds per second of wall time, for both patterns.

    python benchmarks/sim_speed.py [--workload workloads/5000-orders.yaml] [--profile FILE]

The issue's target: 60 s at 5000 orders/s simulated in well under 60 s of wall time.
Prints, per pattern: simulated seconds (warm-up, load and drain), wall and CPU
seconds of the model run (CPU is what other work on the machine does not
inflate), wall / simulated load (below 1: faster than real time), then the time
to write the result directory.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import patterns
from bench.sim import output  # noqa: E402
from bench.sim.model import Scenario, simulate  # noqa: E402
from bench.sim.profile import load_profile  # noqa: E402
from bench.flow.workload import load_workload  # noqa: E402


@click.command()
@click.option("--workload", "workload_path", default=str(ROOT / "workloads" / "5000-orders.yaml"), show_default=True)
@click.option("--profile", "profile_path", default=None, help="Default: the committed profile.")
def main(workload_path: str, profile_path: str | None) -> None:
    workload, profile = load_workload(workload_path), load_profile(profile_path)
    load_s = workload.warmup_s + workload.duration_s
    click.echo(f"{workload.name}: {workload.rate_per_s:g} orders/s, {workload.duration_s:g}s measured "
               f"+ {workload.warmup_s:g}s warm-up")
    click.echo(f"{'pattern':<14} {'orders':>8} {'simulated s':>12} {'wall s':>8} {'CPU s':>7} {'wall/load':>10} "
               f"{'write s':>8}")
    for pattern in ("choreography", "orchestration"):
        scenario = Scenario(patterns.get(pattern), workload, profile)
        began, cpu_began = time.perf_counter(), time.process_time()
        result = simulate(scenario)
        wall_s, cpu_s = time.perf_counter() - began, time.process_time() - cpu_began
        with tempfile.TemporaryDirectory() as scratch:
            began = time.perf_counter()
            output.write(Path(scratch) / "out", scenario, result, time.time(), wall_s)
            write_s = time.perf_counter() - began
        click.echo(f"{pattern:<14} {result.load.started_count:>8} {result.elapsed_s:>12.1f} {wall_s:>8.1f} "
                   f"{cpu_s:>7.1f} {wall_s / load_s:>10.2f} {write_s:>8.1f}")


if __name__ == "__main__":
    main()
