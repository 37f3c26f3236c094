"""The sides of a comparison, read from disk: a run directory, or a series of them
(:mod:`bench.results.series`), with its histograms read on demand."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from bench import inputs
from bench.compare.metrics import Metric
from bench.results import series, summary as run_summary
from bench.results.files import ResultsError
from bench.results.recording import read_hlog


@dataclass
class Result:
    """A run directory: its summary, and its histograms read on demand."""

    path: Path
    summary: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> Result:
        return cls(Path(path), run_summary.read(path))

    @property
    def pattern(self) -> str:
        return str(self.summary.get("pattern", "?"))

    def histograms(self, hlog: str) -> list[HdrHistogram]:
        """Every interval of ``hlog`` (e.g. ``"e2e.hlog"``); all hold measured values only."""
        path = self.path / hlog
        if not path.exists():
            raise ResultsError(f"{path}: missing")
        inputs.check_regular(path, "HdrHistogram log", ResultsError, inputs.MAX_HLOG_BYTES)
        try:
            intervals = read_hlog(path)
        except Exception as err:  # hdrh raises whatever its decoder trips on; name the file, exit 2
            kind = f"{type(err).__module__}.{type(err).__name__}".removeprefix("builtins.")
            raise ResultsError(f"{path}: not a readable HdrHistogram log: {kind}") from None
        if not intervals:  # a run writes one interval a second, empty or not
            raise ResultsError(f"{path}: holds no intervals (truncated?)")
        return intervals


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a run, or a series of runs of one configuration."""

    path: Path
    runs: tuple[Result, ...]

    @classmethod
    def load(cls, path: str | Path) -> Side:
        return cls(Path(path), tuple(Result(p, s) for p, s in series.read(path)))

    @classmethod
    def of(cls, result: Result) -> Side:
        return cls(result.path, (result,))

    @property
    def summary(self) -> dict[str, Any]:
        """The first run's summary: what every run of the side shares (pattern, mode, rate)."""
        return self.runs[0].summary

    @property
    def pattern(self) -> str:
        return self.runs[0].pattern

    def values(self, m: Metric) -> list[float]:
        found = []
        for run in self.runs:
            value = m.value(run.summary)
            if value is None:
                raise ResultsError(f"{run.path}: has no value for {m.name}")
            found.append(float(value))
        return found

    def problems(self) -> list[str]:
        """Each broken run's problems, ``run: problem; problem``."""
        named = lambda r: r.path.name if len(self.runs) > 1 else str(r.path)
        return [f"{named(r)}: {'; '.join(p)}" for r in self.runs if (p := run_summary.problems(r.summary))]
