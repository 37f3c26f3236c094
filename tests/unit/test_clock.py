"""The wall-clock watch, with a wall clock that lies while the monotonic clock does not."""
from __future__ import annotations

import json

import pytest

from bench.results.headline import describe_clock
from bench.run import clock
from bench.kafka import kafkastats


class LyingWall:
    """The clocks WallClockWatch reads (its module's ``time``), stepped by the test rather than read
    off the machine: a monotonic clock, and a wall clock running ``rate`` fast from the start and
    stepped ``step_s`` once told to. The machine's own clocks would leak in: a fresh VM slews its
    wall clock by a hundred ppm or more (seen: -160 ppm), and the microseconds between two readings on a
    busy VM are a hundred ppm of a half-second test too."""

    def __init__(self, rate: float) -> None:
        self.mono, self.rate, self.step_s = 1000.0, rate, 0.0

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return 1.7e9 + (self.mono - 1000.0) * (1.0 + self.rate) + self.step_s


def watch_over(monkeypatch, wall: LyingWall, seconds: int, step_at: int | None = None, step_s: float = 0.0) -> dict:
    monkeypatch.setattr(clock, "time", wall)
    watch = clock.WallClockWatch.start()
    for k in range(seconds):
        wall.mono += 0.05
        if k == step_at:
            wall.step_s = step_s
        watch.read()
    return watch.summary(watch.first_mono)


def test_a_steady_wall_clock_did_not_move(monkeypatch):
    moved = watch_over(monkeypatch, LyingWall(0.0), 10)
    assert moved["moved"] is False and moved["steps"] == 0 and abs(moved["wall_rate_ppm"]) < 100
    assert describe_clock(moved) is None


def test_a_fast_and_stepped_wall_clock_is_measured_and_named(monkeypatch):
    moved = watch_over(monkeypatch, LyingWall(0.005), 20, step_at=10, step_s=5.0)
    assert moved["moved"] is True and moved["steps"] == 1
    assert moved["wall_rate_ppm"] == pytest.approx(5000, rel=0.1)  # the step is not taken for a rate
    assert moved["largest_step_ms"] == pytest.approx(5000, abs=5)
    assert 0.4 < moved["largest_step_at_s"] < 0.7
    assert "ppm against the monotonic clock" in describe_clock(moved) and "+5.000 s" in describe_clock(moved)


def test_a_step_back_is_a_step_too(monkeypatch):
    moved = watch_over(monkeypatch, LyingWall(0.0), 6, step_at=3, step_s=-0.2)
    assert moved["steps"] == 1 and moved["largest_step_ms"] == pytest.approx(-200, abs=2) and moved["moved"]


def _stats(partitions: dict) -> str:
    return json.dumps({"type": "consumer", "topics": {"t": {"partitions": {
        str(p): {"partition": p, **fields} for p, fields in partitions.items()}}}})


def test_backlog_counts_what_the_application_has_not_taken_not_what_is_uncommitted():
    raw = _stats({
        0: {"desired": True, "hi_offset": 1000, "ls_offset": 1000, "app_offset": 990, "committed_offset": 400},
        1: {"desired": True, "hi_offset": 50, "ls_offset": -1, "app_offset": -1001, "committed_offset": 20},
        2: {"desired": False, "hi_offset": 900, "ls_offset": 900, "app_offset": -1001, "committed_offset": -1001},
        -1: {"desired": False, "hi_offset": -1, "app_offset": -1},
    })
    assert kafkastats.backlog(raw) == 10 + 30  # partition 1 not consumed yet: from its committed offset
    assert kafkastats.backlog(None) is None
