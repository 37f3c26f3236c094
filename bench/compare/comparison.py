"""Comparing runs and series: a side-by-side table, and regression rules judged across runs.

Each argument is a run directory or a series of them (:mod:`bench.results.series`); the first
is the baseline and every other one is compared with it. A rule such as ``p99:+10%`` names a
metric and how far it may get worse; :mod:`bench.compare.judge` says when a change counts.

A candidate side with a broken run (interrupted, invalid, or with faulty orders) fails
any gate, whatever the rules say, unless the caller allows it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.compare.judge import ALPHA, Verdict, judge
from bench.compare.rules import Rule
from bench.compare.sides import Side
from bench.compare.table import Row, side_by_side
from bench.results.files import ResultsError


@dataclass(frozen=True)
class Comparison:
    sides: tuple[Side, ...]
    rows: tuple[Row, ...]
    verdicts: tuple[Verdict, ...]
    alpha: float
    allow_broken: bool = False

    @property
    def regressions(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.regression)

    @property
    def broken(self) -> dict[int, list[str]]:
        """Candidate side index -> its broken runs' problems."""
        return {i: p for i, side in enumerate(self.sides) if i and (p := side.problems())}

    @property
    def baseline_problems(self) -> list[str]:
        return self.sides[0].problems()

    @property
    def failed(self) -> bool:
        """The gate's verdict: a regression, or (with rules, unless allowed) a broken candidate."""
        return bool(self.regressions) or bool(self.verdicts and self.broken and not self.allow_broken)


def compare(dirs: Sequence[str | Path], rules: Sequence[Rule] = (), alpha: float = ALPHA,
            allow_broken: bool = False) -> Comparison:
    """Read every run or series (raising ResultsError for one that cannot be used) and
    judge each rule for each side after the first against the first."""
    if len(dirs) < 2:
        raise ResultsError("compare needs at least two result directories or series: the first is the baseline")
    sides = tuple(Side.load(d) for d in dirs)
    verdicts = tuple(judge(rule, sides[0], cand, i, alpha)
                     for i, cand in enumerate(sides[1:], start=1) for rule in rules)
    return Comparison(sides, tuple(side_by_side(sides)), verdicts, alpha, allow_broken)
