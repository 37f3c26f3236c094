"""Options several commands share, declared once."""
from __future__ import annotations

from pathlib import Path

import click

from bench.cli.errors import InputError
from bench.flow.workload import Workload, WorkloadError, load_workload, parse_duration


def _load(ctx, param, value):
    try:
        return load_workload(value)
    except WorkloadError as exc:
        raise InputError(str(exc)) from None


workload_option = click.option("--workload", "workload", type=click.Path(dir_okay=False), default=None,
                               callback=_load, help="Workload YAML (default: workloads/default.yaml).")
kafka_config_option = click.option("--kafka-config", type=click.Path(exists=True, dir_okay=False), default=None,
                                   help="librdkafka properties file (SASL/SSL), applied to every client.")


def bootstrap_option(required: bool = False):
    return click.option("--bootstrap-servers", envvar="BENCH_BOOTSTRAP_SERVERS", required=required,
                        help="Kafka to use, HOST:PORT[,...] (default: the embedded broker)." if not required
                        else "Kafka to use, HOST:PORT[,...].")


def _duration(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise InputError(f"{param.opts[0]}: {exc}") from None


def duration_option(name: str, help: str):
    return click.option(name, callback=_duration, default=None, help=help)


def with_overrides(workload: Workload, **overrides) -> Workload:
    """The workload with the command-line values that were given (None: not given)."""
    try:
        return workload.with_overrides(**{k: v for k, v in overrides.items() if v is not None})
    except WorkloadError as exc:
        raise InputError(str(exc)) from None


def check_fresh_output(output: Path | None) -> None:
    """An --output directory must be new or empty: results are never mixed with old ones."""
    if output is not None and output.exists() and any(output.iterdir()):
        raise InputError(f"--output {output} exists and is not empty: choose a new directory")
