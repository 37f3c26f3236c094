"""CPU time and context switches of a process, read from /proc, main thread and other threads apart.

In a service the main thread runs Python (the loop, handlers, serialization);
the other threads are librdkafka's (its main thread and one per broker
connection), which do the network work. Telling them apart says whether a cost
is ours or the client library's. For a JVM (the broker) only the total matters.

The main thread's wait for a core (runnable, not running: the scheduler's
run-queue delay from /proc/<pid>/task/<pid>/schedstat) is what every message it
handles waits on a busy host, the quantity the simulation's wait for cores
models; None where the kernel does not report it.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    main_s: float = 0.0  # the process's main thread
    other_s: float = 0.0  # every other thread, live or exited
    switches: int = 0  # voluntary + involuntary context switches of the live threads (wake-ups, mostly)
    waited_s: float | None = 0.0  # the main thread's time runnable but waiting for a core (None: not reported)
    runs: int = 0  # times the main thread was put on a core (each after a wait, however short)

    @property
    def cpu_s(self) -> float:
        return self.main_s + self.other_s

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.main_s + other.main_s, self.other_s + other.other_s, self.switches + other.switches,
                     None if self.waited_s is None or other.waited_s is None else self.waited_s + other.waited_s,
                     self.runs + other.runs)

    def __sub__(self, other: "Usage") -> "Usage":
        return Usage(self.main_s - other.main_s, self.other_s - other.other_s, self.switches - other.switches,
                     None if self.waited_s is None or other.waited_s is None else self.waited_s - other.waited_s,
                     self.runs - other.runs)

    def to_dict(self) -> dict:
        """As an agent or a load worker reports it to the coordinator (:meth:`from_dict` reads it back)."""
        return {"main_s": self.main_s, "other_s": self.other_s, "switches": self.switches, "waited_s": self.waited_s,
                "runs": self.runs}

    @staticmethod
    def from_dict(raw: dict | None) -> "Usage":
        """A reported usage; what is missing or not a number counts as nothing (waited: not reported)."""
        raw = raw if isinstance(raw, dict) else {}

        def number(key: str) -> float | None:
            value = raw.get(key)
            if type(value) not in (int, float):
                return None
            try:
                value = float(value)
            except OverflowError:  # an integer too large for a float
                return None
            return value if math.isfinite(value) else None
        return Usage(number("main_s") or 0.0, number("other_s") or 0.0, int(number("switches") or 0), number("waited_s"),
                     int(number("runs") or 0))


def _ticks(stat_path: str) -> int:
    # Fields after the command name (which may hold spaces and parentheses): utime is the 12th, stime the 13th.
    fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process, all its threads (None when it is gone)."""
    try:
        return _ticks(f"/proc/{pid}/stat") * _TICK_S
    except OSError:
        return None


def _waits(pid: int) -> tuple[float | None, int]:
    # schedstat: time on a core, time waiting on a run queue (both ns), times put on a core
    try:
        _, waited_ns, runs = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[:3]
    except (OSError, ValueError):
        return None, 0
    # A kernel that keeps no scheduler statistics writes zeros; a live thread has been on a core.
    return (int(waited_ns) / 1e9, int(runs)) if int(runs) > 0 else (None, 0)


def usage(pid: int) -> Usage | None:
    """CPU of ``pid``'s main thread and of its other threads, its context switches and its main
    thread's wait for a core (None when gone)."""
    try:
        total = _ticks(f"/proc/{pid}/stat")  # includes threads that have exited
        main = _ticks(f"/proc/{pid}/task/{pid}/stat")
        waited, runs = _waits(pid)
        switches = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
                    if "ctxt_switches:" in line:
                        switches += int(line.split()[1])
            except OSError:
                continue  # a thread that exited meanwhile
    except OSError:
        return None
    return Usage(main * _TICK_S, (total - main) * _TICK_S, switches, waited, runs)


def rss_mb(pid: int) -> float | None:
    """Resident memory of a live process in MB (None when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
