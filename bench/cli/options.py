"""Options several commands share, declared once."""
from __future__ import annotations

from pathlib import Path

import click

from bench import inputs
from bench.cli.errors import InputError
from bench.flow.workload import Workload, load_workload, parse_duration


def _load(ctx, param, value):
    return load_workload(value)


workload_option = click.option("--workload", "workload", type=click.Path(dir_okay=False), default=None,
                               callback=_load, help="Workload YAML (default: workloads/default.yaml).")
kafka_config_option = click.option("--kafka-config", type=click.Path(exists=True, dir_okay=False), default=None,
                                   help="librdkafka properties file (SASL/SSL), applied to every client.")


class Ranged(click.ParamType):
    """A number checked against :data:`bench.inputs.RANGES` (ints in range; floats finite, in range)."""

    def __init__(self, name: str, kind: type = int, low_open: bool = False, high_open: bool = False) -> None:
        self.range_name, self.kind, self.low_open, self.high_open = name, kind, low_open, high_open
        self.name = "integer" if kind is int else "float"

    def convert(self, value, param, ctx):
        option = param.opts[0] if param is not None and param.opts else self.range_name
        if isinstance(value, str):
            try:
                value = int(value.strip()) if self.kind is int else float(value)
            except ValueError:
                raise InputError(f"{option}: expected {'a whole number' if self.kind is int else 'a number'}") from None
        if self.kind is int:
            return inputs.check_int(self.range_name, value, None, InputError, key=option)
        return inputs.check_float(self.range_name, value, None, InputError, key=option,
                                  low_open=self.low_open, high_open=self.high_open)


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


def load_options(duration_help: str, warmup_help: str):
    """--duration, --warmup, --workload, --bootstrap-servers and --kafka-config, in that order:
    what a command that drives load on a real cluster takes."""
    options = (duration_option("--duration", duration_help), duration_option("--warmup", warmup_help),
               workload_option, bootstrap_option(), kafka_config_option)

    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command
    return apply


def with_overrides(workload: Workload, **overrides) -> Workload:
    """The workload with the command-line values that were given (None: not given)."""
    return workload.with_overrides(**{k: v for k, v in overrides.items() if v is not None})


def check_fresh_output(output: Path | None) -> None:
    """An --output directory must be new or empty (results are never mixed with old ones), and
    creatable: not a file, not under a file, not a device."""
    inputs.check_output_dir(output, "--output", InputError)
