"""The `bench` command: one click group, thin commands (each in a module named for it)."""
from __future__ import annotations

import signal
import sys

import click

from bench.cli.errors import BenchGroup


@click.group(cls=BenchGroup)
@click.version_option(package_name="bench")
def cli() -> None:
    """Choreography vs orchestration order sagas on a real Kafka broker."""


def _register() -> None:
    # Explicit registry of subcommands: no discovery by import side effect.
    from bench.cli import broker, calibrate, compare, report, run, serve, simulate, sweep, validate

    for command in (broker.broker, calibrate.calibrate, compare.compare, report.report, run.run, serve.serve,
                    simulate.simulate, sweep.sweep, validate.validate):
        cli.add_command(command)


_register()


def _terminate(signum, frame) -> None:
    # SIGTERM unwinds like Ctrl-C: every `finally` stops the services and brokers it started, and a
    # run under load stops it, drains and writes its results marked interrupted (see bench.run).
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = cli.main(prog_name="bench", standalone_mode=False)
    except click.ClickException as exc:
        # One line naming the problem (click's default adds usage lines around it).
        hint = f" (see `{exc.ctx.command_path} --help`)" if isinstance(exc, click.UsageError) and exc.ctx else ""
        click.echo(f"bench: error: {exc.format_message()}{hint}", err=True)
        code = exc.exit_code
    except click.Abort:
        click.echo("bench: interrupted", err=True)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
