"""`bench validate`: real and simulated runs side by side, and the model's error."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from bench import patterns
from bench.cli.options import bootstrap_option, check_fresh_output, duration_option, kafka_config_option
from bench.flow.workload import load_workload
from bench.sim import validate as validation
from bench.sim.profile import load_profile


@click.command()
@click.option("--patterns", "pattern_names", default=",".join(patterns.PATTERNS), show_default=True)
@click.option("--rates", "rate_list", default="200,500,1000", show_default=True, help="Orders per second, comma-separated.")
@duration_option("--duration", "Measured load per point (default 15s).")
@duration_option("--warmup", "Warm-up per point (default 5s).")
@click.option("--workload", "workload_paths", multiple=True, type=click.Path(dir_okay=False),
              help="Workload YAML, repeatable: one row of the matrix per workload (saga) (default: workloads/default.yaml).")
@click.option("--fit-rates", "fit_list", default=None,
              help="Fit the model (wait for cores, broker CPU) to the real runs at these rates only, and judge the "
                   "targets on the other cells, which the fit never saw.")
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False), default=None,
              help="Profile from `bench calibrate` (default: the one measured for this project).")
@click.option("--against", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A real result dir to simulate instead of running (repeatable); --patterns and --rates are ignored.")
@bootstrap_option()
@kafka_config_option
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Validation directory (default: results/<UTC time>-sweep/).")
def validate(pattern_names, rate_list, duration, warmup, workload_paths, fit_list, profile_path, against,
             bootstrap_servers, kafka_config, output) -> None:
    """Run each pattern at each rate on the real broker and in the model; print the errors.

    A matrix: every pattern x workload x rate. Exit 0 when the targets are met on
    the cells judged (p50 within 15%, p99 within 30% and CPU per order within 20%
    where the real run held its rate, knee within 20%), 1 otherwise.
    """
    check_fresh_output(output)
    workloads = tuple(load_workload(path).with_overrides(duration_s=duration or 15.0, warmup_s=warmup or 5.0)
                      for path in (workload_paths or (None,)))
    rates = validation.rates(rate_list)
    fit_rates = validation.fit_rates(fit_list, None if against else rates) if fit_list else ()
    request = validation.ValidateRequest(validation.patterns_of(pattern_names), rates, workloads,
                                         load_profile(profile_path), bootstrap_servers,
                                         Path(kafka_config) if kafka_config else None, output, against=against,
                                         fit_rates=fit_rates)
    validation.check(request)
    outcome = validation.validate(request, echo=lambda line: click.echo(line, err=True))
    click.echo(validation.render_table(outcome))
    click.echo(f"results: {outcome.directory}")
    sys.exit(0 if outcome.met() else 1)
