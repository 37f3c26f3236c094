"""Turning the library's errors into one clear line and an exit code."""
from __future__ import annotations

import click

from bench.kafka.errors import BrokerError


class InputError(click.ClickException):
    """Bad user input (workload, option value, result dir): exit 2, like click's usage errors."""

    exit_code = 2


def _expected_errors() -> tuple[type[BaseException], ...]:
    from bench.kafka.clients import ConfigError

    errors: list[type[BaseException]] = [ConfigError]
    try:
        from bench.flow.workload import WorkloadError

        errors.append(WorkloadError)
    except ImportError:
        pass
    try:
        from bench.results.files import ResultsError

        errors.append(ResultsError)
    except ImportError:
        pass
    return tuple(errors)


class BenchGroup(click.Group):
    """Maps expected library errors to one line: input errors exit 2, environment errors exit 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrokerError as exc:
            raise click.ClickException(str(exc)) from None
        except _expected_errors() as exc:
            raise InputError(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("bench: interrupted", err=True)
            ctx.exit(130)
