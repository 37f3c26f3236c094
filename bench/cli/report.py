"""`bench report`: an HTML report with charts of one or more result directories."""
from __future__ import annotations

from pathlib import Path

import click

from bench.compare.report import write_report


@click.command()
@click.argument("dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="HTML file to write (default: results/report-<UTC time>.html); PNGs go beside it.")
def report(dirs, output) -> None:
    """Write one self-contained HTML report (charts embedded) of result directories."""
    html, pngs = write_report(dirs, output)
    click.echo(f"report: {html}")
    click.echo(f"charts: {', '.join(p.name for p in pngs)}")
