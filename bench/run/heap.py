"""Handing memory a process has freed back to the system, so a long run's peak is its largest burst.

glibc keeps what a process frees inside its heaps for reuse and returns it only from a heap's top.
A burst (a backlog fetched at once after a stall, the live audit catching up with the log) leaves
fragments that pin the pages the burst used, so each later burst starts from the last one's height
and a soak's peak resident size climbs with the number of bursts, that is with its length.
``malloc_trim(0)`` returns every free page inside every heap (glibc >= 2.8 madvises them away)
and leaves live objects where they are. It takes a few milliseconds on a service, tens on the
auditor: done once a minute, from the loop that already does its once-a-second chores.
"""
from __future__ import annotations

import ctypes
import time

TRIM_EVERY_S = 60.0


def _malloc_trim():
    """glibc's malloc_trim, or None on a C library without it (nothing to do there)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


class Trim:
    """Returns free heap pages to the system at most once every ``every_s``; records what it cost."""

    def __init__(self, every_s: float = TRIM_EVERY_S) -> None:
        self._malloc_trim = _malloc_trim()
        self.every_s = every_s
        self.next_s = time.monotonic() + every_s
        self.count = 0
        self.longest_s = 0.0

    def maybe(self, now_s: float) -> None:
        """Trim if one is due at ``now_s`` (monotonic seconds)."""
        if now_s < self.next_s or self._malloc_trim is None:
            return
        began = time.monotonic()
        self._malloc_trim(0)
        ended = time.monotonic()
        self.next_s = ended + self.every_s
        self.count += 1
        self.longest_s = max(self.longest_s, ended - began)

    def to_dict(self) -> dict:
        return {"trims": self.count, "longest_trim_ms": round(self.longest_s * 1e3, 1)}
