"""How far the wall clock moved against the monotonic clock during a run.

Every duration bench reports is a difference of two readings of CLOCK_MONOTONIC, which
nothing steps and which every process on one machine shares. The wall clock is a label
(file names, .hlog interval timestamps, the timeline), and a time daemon, a VM migration
or a snapshot restore may slew or step it mid-run: on a freshly forked VM it ran 0.5%
fast for minutes and then stepped 5 s. :class:`WallClockWatch` measures that, with a few
numbers whatever the run's length, so a run can say when its clock moved.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

# A change of (wall - monotonic) between two readings larger than this, plus this fraction of
# the time between them, is a step; below, it is a rate. The kernel slews at most 500 ppm and
# the fastest drift seen on a forked VM was 0.5%, so a 1% rate is no slew.
STEP_FLOOR_S = 0.001
STEP_RATE = 0.01
# Reported as moved past these: a 1 s span read on the wall clock would be off by 0.1 ms.
MOVED_RATE_PPM = 100.0
MOVED_STEP_MS = 1.0


def _offset_s() -> tuple[float, float]:
    mono = time.monotonic()
    return mono, time.time() - mono


@dataclass
class WallClockWatch:
    """Read at the start, then every so often (each second of the load is plenty)."""

    first_mono: float = 0.0
    first_offset: float = 0.0
    last_mono: float = 0.0
    last_offset: float = 0.0
    steps_s: float = 0.0  # sum of every step, to take out of the rate
    steps: int = 0
    largest_step_s: float = 0.0
    largest_step_at: float = 0.0  # monotonic

    @classmethod
    def start(cls) -> "WallClockWatch":
        mono, offset = _offset_s()
        return cls(mono, offset, mono, offset)

    def read(self) -> None:
        mono, offset = _offset_s()
        change, elapsed = offset - self.last_offset, mono - self.last_mono
        if abs(change) > STEP_FLOOR_S + STEP_RATE * elapsed:
            self.steps += 1
            self.steps_s += change
            if abs(change) > abs(self.largest_step_s):
                self.largest_step_s, self.largest_step_at = change, mono
        self.last_mono, self.last_offset = mono, offset

    def summary(self, since_mono: float) -> dict:
        """The figures summary.json keeps; step times in seconds after ``since_mono`` (the run's start)."""
        elapsed = self.last_mono - self.first_mono
        drift = self.last_offset - self.first_offset - self.steps_s
        rate_ppm = drift / elapsed * 1e6 if elapsed > 0 else 0.0
        step_ms = self.largest_step_s * 1e3
        return {
            "wall_rate_ppm": round(rate_ppm, 1),
            "largest_step_ms": round(step_ms, 3),
            "largest_step_at_s": round(self.largest_step_at - since_mono, 1) if self.steps else None,
            "steps": self.steps,
            "observed_s": round(elapsed, 1),
            "moved": abs(rate_ppm) >= MOVED_RATE_PPM or abs(step_ms) >= MOVED_STEP_MS,
        }
