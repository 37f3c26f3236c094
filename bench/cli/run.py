"""`bench run`: one measured run of a pattern against a real broker."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from bench import patterns
from bench.results.headline import headline
from bench.results import series
from bench.run import series as run_series
from bench.results import summary as run_summary
from bench.cli.progress import Phases
from bench.cli.options import Ranged, load_options, with_overrides
from bench.run.run import RunRequest, check, run as run_benchmark


@click.command()
@click.option("--pattern", type=click.Choice(sorted(patterns.PATTERNS)), required=True)
@click.option("--rate", type=Ranged("rate", float, low_open=True), default=None, help="Orders per second (overrides the workload).")
@load_options("Measured load, e.g. 60s (overrides the workload).",
              "Unmeasured load before it, e.g. 10s (overrides the workload).")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Result directory (default: results/<UTC time>-<pattern>-<rate>/).")
@click.option("--recreate-topics", is_flag=True,
              help="Delete and recreate the pattern's topics even where bench did not create them (their records are lost).")
@click.option("--hosts", type=click.Path(path_type=Path), default=None,
              help="A hosts file: which service instances the agents on other hosts run (`bench agent`).")
@click.option("--repeat", type=Ranged("repeat"), default=1, show_default=True,
              help="Runs of the same settings, written as a series: OUTPUT/1 .. OUTPUT/N (what `bench compare` judges).")
def run(pattern, rate, duration, warmup, workload, bootstrap_servers, kafka_config, output, recreate_topics,
        hosts, repeat) -> None:
    """Drive a pattern at an open-loop rate, audit every order, write results.

    Exit codes: 0 valid and clean; 1 orders lost, stuck, duplicated or inconsistent;
    3 the run could not hold its rate; 130 interrupted. For a series, the worst run's.
    """
    workload = with_overrides(workload, rate_per_s=rate, duration_s=duration, warmup_s=warmup)
    request = RunRequest(patterns.get(pattern), workload, bootstrap_servers,
                         Path(kafka_config) if kafka_config else None, output, recreate_topics=recreate_topics,
                         hosts=hosts)
    check(request)  # every input (workload, properties, output path, numbers) before any broker is touched
    echo = lambda line: click.echo(line, err=True)
    if repeat == 1:
        phases = Phases(echo)
        try:
            outcome = run_benchmark(request, echo=echo, progress=phases)
        finally:
            phases.close()
        click.echo(headline(outcome.summary))
        click.echo(f"results: {outcome.directory}")
        sys.exit(outcome.exit_code)
    base, outcomes = run_series.repeat(request, repeat, echo)
    for outcome in outcomes:
        click.echo(f"{outcome.directory}: {headline(outcome.summary)}")
    click.echo(series_line(outcomes))
    click.echo(f"results: {base} (a series of {len(outcomes)} runs)")
    sys.exit(run_summary.worst_exit_code([o.exit_code for o in outcomes]))


def series_line(outcomes) -> str:
    """Each headline statistic's median (min-max) over the series' runs."""
    e2e = lambda stat: series.describe([o.summary["latency_ms"]["e2e"][stat] for o in outcomes])
    rate = series.describe([o.summary["rate_achieved_per_s"] for o in outcomes])
    broken = [o.directory.name for o in outcomes if run_summary.problems(o.summary)]
    return (f"series of {len(outcomes)}: e2e ms p50 {e2e('p50')}  p99 {e2e('p99')}  finished/s {rate}"
            + (f"  broken runs: {', '.join(broken)}" if broken else "  every run valid and clean"))
