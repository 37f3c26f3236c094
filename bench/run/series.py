"""Running a series: ``bench run --repeat N`` writes ``OUT/1`` .. ``OUT/N`` on one broker.

Reading a series back is :mod:`bench.results.series`, which `bench compare` uses without
loading the run stack.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from bench.results import files as results
from bench.results.series import members
from bench.run.run import RunOutcome, RunRequest, check, one_broker, run


def repeat(request: RunRequest, count: int, echo: Callable[[str], None] = print) -> tuple[Path, list[RunOutcome]]:
    """``count`` runs of one request into ``OUT/1`` .. ``OUT/count`` on one broker; an
    interrupted run ends the series (the runs before it are kept, the interrupted one is marked)."""
    w = request.workload
    check(request)  # bad input is one line, and no series directory
    base = request.output or results.result_dir(request.pattern.name, w.rate_per_s, base=request.results_base)
    base.mkdir(parents=True, exist_ok=True)
    outcomes: list[RunOutcome] = []
    with one_broker(request, echo):
        for k, out in enumerate(members(base, count), start=1):
            echo(f"series run {k}/{count} -> {out}")
            outcome = run(dataclasses.replace(request, output=out), echo)
            outcomes.append(outcome)
            if outcome.summary["interrupted"]:
                break
    return base, outcomes
