"""Freed memory goes back to the system: a burst does not pin its pages for the rest of a run."""
from __future__ import annotations

import random
import resource

from bench.run import heap


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def test_a_trim_returns_what_a_burst_left_fragmented():
    rng = random.Random(1)
    kept, burst = [], []
    for i in range(120_000):  # ~270 MB in malloc'd blocks, one in ten kept: fragments across the heap
        (kept if i % 10 == 0 else burst).append(bytearray(rng.randint(600, 4000)))
    del burst
    trim = heap.Trim(every_s=0.0)
    before = _rss_mb()
    trim.maybe(float("inf"))
    after = _rss_mb()
    assert trim.count == 1 and trim.longest_s > 0
    assert before - after > 100, (before, after)  # without the trim glibc keeps the burst's pages
    assert len(kept) == 12_000


def test_a_trim_waits_its_turn():
    trim = heap.Trim(every_s=60.0)
    trim.maybe(trim.next_s - 1)
    assert trim.count == 0
    trim.maybe(trim.next_s)
    assert trim.count == 1 and trim.to_dict()["trims"] == 1
