"""A series: repeated runs of one configuration, the unit a regression gate judges.

On disk a series is a directory whose subdirectories are run directories (each holding
summary.json), named anything: ``bench run --repeat N`` writes ``OUT/1`` .. ``OUT/N``, and a
shell loop writing ``S/A/1``, ``S/B/1``, ``S/A/2`` ... makes ``S/A`` and ``S/B`` two series.
A single run directory is a series of one.
"""
from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from pathlib import Path

from bench.results import files as results, summary

# Runs of one series must agree on these: otherwise they are not repeats of one configuration.
SAME = ("mode", "pattern", "rate_target_per_s")


def _natural(path: Path) -> list:
    """``2`` before ``10``: numbered runs in the order they were written."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def run_dirs(path: str | Path) -> list[Path]:
    """The run directories of ``path``: itself when it is a run, else its subdirectories
    that are runs, in natural order. ResultsError when it is neither, or when a
    subdirectory looks like a half-written run (files but no summary.json)."""
    path = Path(path)
    if not path.is_dir():
        raise results.ResultsError(f"{path}: no such result directory or series")
    if (path / results.INCOMPLETE).exists():
        raise results.ResultsError(f"{path}: an unfinished run ({results.INCOMPLETE}: it failed before its "
                                   "summary.json was written)")
    if (path / results.SUMMARY).exists():
        return [path]
    if (path / results.SWEEP).exists():
        rates = sorted((c.name for c in path.iterdir() if c.is_dir()), key=lambda name: _natural(Path(name)))
        raise results.ResultsError(f"{path}: a sweep, not a run or a series: compare one rate's series, e.g. "
                                   f"{path / (rates[0] if rates else '<pattern>-<rate>')}")
    runs, partial = [], []
    for child in sorted((c for c in path.iterdir() if c.is_dir() and not c.name.startswith(".")), key=_natural):
        if (child / results.SUMMARY).exists() and not (child / results.INCOMPLETE).exists():
            runs.append(child)
        else:  # a run directory without its summary is never silently dropped from a series
            partial.append(child)
    if partial:
        raise results.ResultsError(f"{partial[0]}: a run without summary.json (unfinished?); remove it "
                                   f"from the series {path} or pass the runs you want")
    if not runs:
        raise results.ResultsError(f"{path}: neither a run (no {results.SUMMARY}) nor a series (no run directories in it)")
    return runs


def read(path: str | Path) -> list[tuple[Path, dict]]:
    """Every run of the series at ``path`` with its checked summary; the runs must be
    repeats of one configuration (same mode, pattern and rate)."""
    runs = [(run, summary.read(run)) for run in run_dirs(path)]
    first_path, first = runs[0]
    for run, s in runs[1:]:
        for key in SAME:
            if s.get(key) != first.get(key):
                raise results.ResultsError(
                    f"{path}: not a series of one configuration: {first_path.name} has {key} {first.get(key)!r}, "
                    f"{run.name} has {s.get(key)!r} (a sweep? compare its points one by one)")
    return runs


def members(base: Path, count: int) -> list[Path]:
    """The run directories ``base/1`` .. ``base/count`` that ``bench run --repeat`` writes."""
    return [base / str(k) for k in range(1, count + 1)]


def describe(values: Sequence[float | None]) -> str:
    """``median (min-max)`` of one statistic over a series' runs."""
    known = sorted(v for v in values if v is not None)
    if not known:
        return "-"
    median = statistics.median(known)
    return f"{median:.2f}" if len(known) == 1 else f"{median:.2f} ({known[0]:.2f}-{known[-1]:.2f})"
