"""The `bench` command: one click group, thin commands (each in a module named for it)."""
from __future__ import annotations

import sys

import click

from bench.cli.errors import BenchGroup


@click.group(cls=BenchGroup)
@click.version_option(package_name="bench")
def cli() -> None:
    """Choreography vs orchestration order sagas on a real Kafka broker."""


def _register() -> None:
    # Explicit registry of subcommands: no discovery by import side effect.
    from bench.cli import broker, compare, report, run, serve, sweep

    for command in (broker.broker, compare.compare, report.report, run.run, serve.serve, sweep.sweep):
        cli.add_command(command)


_register()


def main() -> None:
    sys.exit(cli.main(prog_name="bench"))
