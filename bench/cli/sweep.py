"""`bench sweep`: run patterns over a list of rates and find each pattern's knee."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from bench import inputs, patterns
from bench.cli.errors import InputError
from bench.cli.options import Ranged, check_fresh_output, load_options, with_overrides
from bench.run.sweep import PLOT, SWEEP, SweepRequest, render_table, sweep as run_sweep


def _patterns(ctx, param, value):
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in patterns.PATTERNS]
    if unknown:
        raise InputError(f"--pattern: unknown pattern {unknown[0]!r}: choose from {', '.join(patterns.PATTERNS)}")
    return tuple(patterns.get(name) for name in names)


def _rates(ctx, param, value):
    return inputs.rate_list(value, "--rates", InputError)


@click.command()
@click.option("--pattern", "pattern_list", default=",".join(patterns.PATTERNS), show_default=True,
              callback=_patterns, help="Comma-separated patterns.")
@click.option("--rates", required=True, callback=_rates, help="Comma-separated orders per second, e.g. 500,1000,2000.")
@load_options("Measured load of each point, e.g. 30s (overrides the workload).",
              "Unmeasured load before each point, e.g. 5s (overrides the workload).")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Sweep directory (default: results/<UTC time>-sweep/).")
@click.option("--stop-early", is_flag=True,
              help="Skip a pattern's higher rates once a rate did not hold (most of its runs, at least two, missed).")
@click.option("--repeat", type=Ranged("repeat"), default=1, show_default=True,
              help="Runs of the knee's rate and of the rate above it, a series each: the knee with its spread. "
                   "(A rate whose one run missed is run again whatever this is.)")
def sweep(pattern_list, rates, duration, warmup, workload, bootstrap_servers, kafka_config, output, stop_early,
          repeat) -> None:
    """Run each pattern at each rate; plot latency against throughput; report each knee:
    the highest rate whose runs were mostly valid with p99 under the workload's latency_bound_p99.

    Exit codes: 0 done; 1 some point's audit found lost, stuck or duplicated orders; 130 interrupted.
    """
    if not pattern_list:
        raise InputError("--pattern: name at least one pattern")
    workload = with_overrides(workload, duration_s=duration, warmup_s=warmup)
    check_fresh_output(output)
    outcome = run_sweep(SweepRequest(pattern_list, rates, workload, bootstrap_servers,
                                     Path(kafka_config) if kafka_config else None, output, stop_early=stop_early,
                                     repeat=repeat),
                        echo=lambda line: click.echo(line, err=True))
    click.echo(render_table(outcome))
    click.echo(f"sweep: {outcome.directory / SWEEP}  plot: {outcome.directory / PLOT}")
    sys.exit(outcome.exit_code)
