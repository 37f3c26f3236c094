"""The `bench` command: one click group, thin commands (each in a module named for it)."""
from __future__ import annotations

import importlib
import signal
import sys

import click

from bench.cli.errors import BenchGroup


# Explicit registry of subcommands (name -> module:attribute), no discovery by import side effect.
# A command's module is imported when it is invoked or listed, so `bench compare` and `bench report`
# never load the run stack and the Kafka client that `bench run` needs.
COMMANDS = {
    "agent": "bench.cli.agent:agent",
    "broker": "bench.cli.broker:broker",
    "calibrate": "bench.cli.calibrate:calibrate",
    "compare": "bench.cli.compare:compare",
    "report": "bench.cli.report:report",
    "run": "bench.cli.run:run",
    "serve": "bench.cli.serve:serve",
    "simulate": "bench.cli.simulate:simulate",
    "sweep": "bench.cli.sweep:sweep",
    "validate": "bench.cli.validate:validate",
}


class _Commands(BenchGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        return getattr(importlib.import_module(module), attribute)


@click.group(cls=_Commands)
@click.version_option(package_name="bench")
def cli() -> None:
    """Choreography vs orchestration order sagas on a real Kafka broker."""


def _terminate(signum, frame) -> None:
    # SIGTERM unwinds like Ctrl-C: every `finally` stops the services and brokers it started, and a
    # run under load stops it, drains and writes its results marked interrupted (see bench.run.run).
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
