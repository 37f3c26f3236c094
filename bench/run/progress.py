"""How a long phase of a run tells its progress: one callback, ``progress(phase, done, total)``.

A run's phases that take more than a moment (warming a new broker up, starting the services,
the audit's reading of the rest of every topic) call it as they go, ``total`` None when not
known; the command draws it (:mod:`bench.cli.progress`: a bar on a terminal, a plain line
every few seconds in a log).
"""
from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, float, "float | None"], None]


def no_progress(phase: str, done: float, total: float | None) -> None:
    """For callers that show none (tests, library use)."""
