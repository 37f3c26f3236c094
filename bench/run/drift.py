"""Whether a run changed over its length: the first against the last tenth of its measurement window.

A soak exists to show what only time shows (a leak, log-segment rolls, compaction, GC). Each
second of the load the run hands its tick here; at four instants (the window's start, a tenth
in, a tenth before its end, and when the load and its drain ended) the sampler takes one reading: the harness's and the
broker's CPU seconds, the orders started so far, the broker's resident memory and its log on
disk. Four readings whatever the run's length. Latency per tenth comes from e2e.hlog after the
run (:func:`bench.results.recording.window_summary`).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

TENTH = 0.1
# Past these, summary.json's drift names what changed (the last tenth against the first).
CHANGED_BEYOND = {"e2e_p99_ms": 2.0, "e2e_p50_ms": 1.5, "cpu_us_per_order": 1.25, "broker_rss_mb": 1.5}


@dataclass(frozen=True)
class Reading:
    t_s: float  # seconds into the load, monotonic
    cpu_s: float  # harness and broker (the broker's when it is ours to measure)
    orders: int  # started so far
    broker_rss_mb: float | None  # None: a cluster that is not ours
    broker_disk_mb: float | None


class DriftSampler:
    """Takes the four readings as the run's seconds pass; ``read`` takes one. The load generator's
    tick hands the seconds over, so a reading is taken by a thread of the sampler's own: walking
    a soak's broker log directories must not hold up the schedule."""

    def __init__(self, warmup_s: float, duration_s: float, read: Callable[[float], Reading]) -> None:
        tenth = duration_s * TENTH
        self.tenth_s = tenth
        self.marks = (warmup_s, warmup_s + tenth, warmup_s + duration_s - tenth, warmup_s + duration_s)
        self.read = read
        self.readings: list[Reading] = []  # complete once finish() returned
        self.asked = 0
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.worker = threading.Thread(target=self._work, name="drift", daemon=True)
        self.worker.start()

    def _work(self) -> None:
        while (t_s := self.queue.get()) is not None:
            try:
                self.readings.append(self.read(t_s))
            except Exception:  # noqa: BLE001 - a reading that fails leaves the run without drift, not broken
                self.asked = len(self.marks) + 1

    def _ask(self, t_s: float) -> None:
        self.asked += 1
        self.queue.put(t_s)

    def on_second(self, t_s: float) -> None:
        if self.asked < len(self.marks) - 1 and t_s >= self.marks[self.asked]:
            self._ask(t_s)

    def finish(self, t_s: float) -> None:
        """The last reading, when the load (and its drain) ended: the orders of the last tenth
        finish in the drain, and their cost with them. None unless the window ran to its end."""
        if self.asked == len(self.marks) - 1 and t_s >= self.marks[-1]:
            self._ask(t_s)
        self.queue.put(None)
        self.worker.join(60.0)

    def summary(self, first_latency: dict, last_latency: dict) -> dict | None:
        """summary.json's ``drift``: each figure of the first and the last tenth, and which changed
        beyond :data:`CHANGED_BEYOND` (:func:`bench.results.headline.describe_drift` says it); None when the run ended before its window did."""
        if len(self.readings) < len(self.marks):
            return None
        a, b, c, d = self.readings
        first = _tenth(a, b, first_latency)
        last = _tenth(c, d, last_latency)
        changed = [name for name, factor in CHANGED_BEYOND.items()
                   if first.get(name) and last.get(name) is not None and last[name] >= factor * first[name]]
        return {"tenth_s": round(self.tenth_s, 1), "first_tenth": first, "last_tenth": last, "changed": changed}


def _tenth(start: Reading, end: Reading, latency: dict) -> dict:
    orders = end.orders - start.orders
    seconds = end.t_s - start.t_s
    return {
        "e2e_p50_ms": latency.get("p50"), "e2e_p99_ms": latency.get("p99"),
        "started_per_s": round(orders / seconds, 1) if seconds > 0 else None,
        "cpu_us_per_order": round((end.cpu_s - start.cpu_s) / orders * 1e6, 1) if orders > 0 else None,
        "broker_rss_mb": end.broker_rss_mb,
        "broker_disk_mb": end.broker_disk_mb,
    }

