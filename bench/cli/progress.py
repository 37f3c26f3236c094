"""The long phases of a command on screen: a rich progress bar on a terminal, a plain line every
few seconds when the output is a log (CI), so nobody watches a silent minute.

One :class:`Phases` per command; the run calls it as ``progress(phase, done, total)``
(:mod:`bench.run.progress`). A phase's bar ends when it is done or another phase begins.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

PLAIN_EVERY_S = 5.0


class Phases:
    def __init__(self, echo: Callable[[str], None], stream: TextIO | None = None) -> None:
        self.echo = echo
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.phase: str | None = None
        self.ended: str | None = None  # the last phase that ran to its total
        self.bar: Progress | None = None
        self.task = None
        self.began = self.next_line = 0.0

    def __call__(self, phase: str, done: float, total: float | None) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if finished and phase == self.ended:
            return  # told again that it is done (a caller polling a finished phase): said once already
        self.ended = None
        if phase != self.phase:
            self.close()
            self.phase, self.began, self.next_line = phase, now, now + PLAIN_EVERY_S
            if self.tty:
                self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TimeElapsedColumn(), TimeRemainingColumn(),
                                    console=Console(file=self.stream), transient=True)
                self.bar.start()
                self.task = self.bar.add_task(phase, total=total)
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total)
        elif now >= self.next_line or finished:
            self.echo(_plain(phase, done, total, now - self.began))
            self.next_line = now + PLAIN_EVERY_S
        if finished:
            self.close()
            self.ended = phase

    def close(self) -> None:
        """End the phase on screen (a bar is removed; the run's own lines say what it did)."""
        if self.bar is not None:
            self.bar.stop()
        self.bar, self.task, self.phase = None, None, None


def _plain(phase: str, done: float, total: float | None, elapsed_s: float) -> str:
    if not total:
        return f"{phase}: {done:,.0f} after {elapsed_s:.0f}s"
    share = done / total
    left = f", about {elapsed_s / share - elapsed_s:.0f}s left" if 0 < share < 1 else ""
    return f"{phase}: {done:,.0f} of {total:,.0f} ({share:.0%}) after {elapsed_s:.0f}s{left}"
