"""Options several commands share, declared once."""
from __future__ import annotations

import click

from bench.cli.errors import InputError
from bench.workload import WorkloadError, load_workload, parse_duration


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
