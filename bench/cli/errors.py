"""Turning bench's errors into one clear line and an exit code, once, for every command."""
from __future__ import annotations

import click

from bench.errors import BadInput, BenchError


class InputError(BadInput):
    """Bad user input found by a command itself (an option value, a combination): exit 2."""


class BenchGroup(click.Group):
    """Maps :class:`bench.errors.BenchError` to one line and its exit code (2 input, 1 environment).
    Commands raise; they never catch and re-raise bench's errors themselves."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BenchError as exc:
            raise _one_line(exc) from None
        except KeyboardInterrupt:
            click.echo("bench: interrupted", err=True)
            ctx.exit(130)


def _one_line(exc: BenchError) -> click.ClickException:
    error = click.ClickException(str(exc))
    error.exit_code = exc.exit_code
    return error
