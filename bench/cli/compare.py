"""`bench compare`: runs and series side by side, and a regression gate judged across runs."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from bench.cli.options import Ranged
from bench.compare.comparison import compare as compare_results
from bench.compare.judge import ALPHA
from bench.compare.render import FORMATS, render
from bench.compare.rules import parse_rules


@click.command()
@click.argument("dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--fail-on", "fail_on", multiple=True, metavar="RULES",
              help="Comma-separated rules, e.g. 'p99:+10%,p50:+10%,throughput:-5%,lost:+0' (repeatable).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--alpha", type=Ranged("alpha", float, low_open=True, high_open=True), default=ALPHA, show_default=True,
              help="Significance level of the one-sided Mann-Whitney test across runs.")
@click.option("--allow-broken", is_flag=True,
              help="Judge the rules even when a candidate run is invalid, interrupted or lost orders.")
def compare(dirs, fail_on, fmt, alpha, allow_broken) -> None:
    """Compare runs or series (directories of runs): the first is the baseline.

    A rule's metric is taken once per run; it regresses only when the change is past
    its threshold and significant across runs (4 + 4 runs can show it; with one run per
    side the rule is judged by its threshold alone, and the verdict says so). With
    --fail-on, a candidate with a broken run fails too. Exit codes: 0 no regression;
    1 regression or broken candidate; 2 bad input (directory, file, rule, schema).
    """
    rules = parse_rules(",".join(fail_on))
    comparison = compare_results(dirs, rules, alpha, allow_broken)
    click.echo(render(comparison, fmt))
    sys.exit(1 if comparison.failed else 0)
