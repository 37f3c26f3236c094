"""`bench simulate`: the SimPy model of a pattern, writing a result dir like `bench run`'s."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from bench import patterns
from bench.cli.errors import InputError
from bench.cli.options import Ranged, check_fresh_output, duration_option, with_overrides, workload_option
from bench.results.headline import headline
from bench.sim import simulation
from bench.sim.hosts import PLACEMENTS
from bench.sim.profile import load_profile


@click.command()
@click.option("--pattern", type=click.Choice(sorted(patterns.PATTERNS)), required=True)
@click.option("--rate", type=Ranged("rate", float, low_open=True), default=None, help="Orders per second (overrides the workload).")
@duration_option("--duration", "Measured load, e.g. 60s (overrides the workload).")
@duration_option("--warmup", "Unmeasured load before it, e.g. 10s (overrides the workload).")
@click.option("--seed", type=Ranged("seed"), default=None, help="Seeds arrivals and the model (overrides the workload).")
@workload_option
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False), default=None,
              help="Profile from `bench calibrate` (default: the one measured for this project).")
@click.option("--placement", type=click.Choice(PLACEMENTS), default="single", show_default=True,
              help="single: every process on the calibrated machine; spread: each on a host of its own.")
@click.option("--brokers", type=Ranged("brokers"), default=None, help="Brokers in the cluster (default: the replication factor).")
@duration_option("--network-rtt", "With --placement spread: network round trip between hosts, e.g. 200us (default: the profile's).")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Result directory (default: results/<UTC time>-<pattern>-sim-<rate>/).")
def simulate(pattern, rate, duration, warmup, seed, workload, profile_path, placement, brokers, network_rtt,
             output) -> None:
    """Simulate a pattern with the model calibrated on the real broker.

    Same workload file, same result files as `bench run` (summary.json says
    mode: simulation); same seed, same numbers. Exit codes as `bench run`.
    """
    if network_rtt is not None and placement != "spread":
        raise InputError("--network-rtt is the round trip between hosts: it needs --placement spread")
    workload = with_overrides(workload, rate_per_s=rate, duration_s=duration, warmup_s=warmup, seed=seed)
    check_fresh_output(output)
    profile = load_profile(profile_path)
    if network_rtt is not None:
        profile = dataclasses.replace(profile, network_rtt_us=network_rtt * 1e6)
    outcome = simulation.run(simulation.SimRequest(patterns.get(pattern), workload, profile, placement, brokers,
                                                   output), echo=lambda line: click.echo(line, err=True))
    click.echo(headline(outcome.summary))
    click.echo(f"results: {outcome.directory}")
    sys.exit(outcome.exit_code)
