"""`bench compare`: result directories side by side, and a regression gate."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from bench.cli.errors import InputError
from bench.compare import ALPHA, FORMATS, RuleError, compare as compare_results, parse_rules, render
from bench.results import ResultsError


@click.command()
@click.argument("dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--fail-on", "fail_on", multiple=True, metavar="RULES",
              help="Comma-separated rules, e.g. 'p99:+10%,p50:+10%,throughput:-5%,lost:+0' (repeatable).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=ALPHA, show_default=True,
              help="Significance level of the one-sided test over per-interval values.")
def compare(dirs, fail_on, fmt, alpha) -> None:
    """Compare result directories: the first is the baseline.

    A rule's metric regresses only when it is past its threshold and the change is
    statistically significant over the per-interval histograms. Exit codes: 0 no
    regression; 1 regression; 2 bad input (directory, file, rule, schema).
    """
    try:
        rules = parse_rules(",".join(fail_on))
        comparison = compare_results(dirs, rules, alpha)
    except (RuleError, ResultsError) as exc:
        raise InputError(str(exc)) from None
    click.echo(render(comparison, fmt))
    sys.exit(1 if comparison.regressions else 0)
