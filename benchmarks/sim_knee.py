"""A simulated sweep: each pattern at each rate in the model, and each pattern's knee.

    python benchmarks/sim_knee.py --rates 4000,6000,8000 [--patterns orchestration] [--workload W]
                                  [--duration 20s] [--placement spread] [--network-rtt 200us] [--instances 1]

The knee is :func:`bench.run.sweep.knee`'s: the highest rate whose (simulated) run
is valid with p99 under the workload's bound. Nothing is written to disk.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import patterns
from bench.results import validity
from bench.results.recording import summary_ms  # noqa: E402
from bench.sim.histograms import histogram_of  # noqa: E402
from bench.sim.model import Scenario, simulate  # noqa: E402
from bench.sim.profile import load_profile  # noqa: E402
from bench.run.sweep import Point, knee, rate_text  # noqa: E402
from bench.flow.workload import load_workload, parse_duration  # noqa: E402


@click.command()
@click.option("--rates", required=True, help="Orders per second, comma-separated.")
@click.option("--patterns", "pattern_names", default="choreography,orchestration", show_default=True)
@click.option("--workload", "workload_path", default=None, help="Default: workloads/default.yaml.")
@click.option("--duration", default="20s", show_default=True)
@click.option("--warmup", default="5s", show_default=True)
@click.option("--placement", type=click.Choice(["single", "spread"]), default="single", show_default=True)
@click.option("--network-rtt", default=None, help="With spread placement, e.g. 200us.")
@click.option("--instances", type=int, default=None, help="Instances of every role (overrides the workload).")
@click.option("--profile", "profile_path", default=None)
def main(rates, pattern_names, workload_path, duration, warmup, placement, network_rtt, instances,
         profile_path) -> None:
    workload = load_workload(workload_path).with_overrides(duration_s=parse_duration(duration),
                                                          warmup_s=parse_duration(warmup))
    if instances is not None:
        workload = workload.with_overrides(instances=dict.fromkeys(workload.roles, instances))
    profile = load_profile(profile_path)
    if network_rtt is not None:
        profile = dataclasses.replace(profile, network_rtt_us=parse_duration(network_rtt) * 1e6)
    bound_ms = workload.latency_bound_p99_s * 1000
    click.echo(f"{'pattern':<14} {'rate/s':>8} {'done/s':>8} {'valid':>5} {'p50 ms':>9} {'p99 ms':>9} {'wall s':>7}")
    for pattern in pattern_names.split(","):
        points = []
        for rate in (float(r) for r in rates.split(",")):
            w = workload.with_overrides(rate_per_s=rate)
            began = time.perf_counter()
            result = simulate(Scenario(patterns.get(pattern), w, profile, placement))
            e2e = summary_ms(histogram_of(result.e2e[1] * 1e6))
            slip = summary_ms(histogram_of(result.slip[1] * 1e6))
            valid, _ = validity.judge(result.load, rate, slip["p99"])
            done = result.load.finished_in_window / w.duration_s
            point = Point(pattern, rate, done, valid, None, e2e["p50"], e2e["p99"], e2e["p999"], True, "")
            points.append(point)
            fmt = lambda v: "-" if v is None else f"{v:.1f}"
            click.echo(f"{pattern:<14} {rate_text(rate):>8} {done:>8.0f} {'yes' if valid else 'no':>5} "
                       f"{fmt(e2e['p50']):>9} {fmt(e2e['p99']):>9} {time.perf_counter() - began:>7.1f}")
        best = knee(points, bound_ms)
        click.echo(f"knee {pattern}: {rate_text(best) + '/s' if best else 'none'} (valid, p99 < {bound_ms:g} ms)")


if __name__ == "__main__":
    main()
