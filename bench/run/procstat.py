"""CPU time and context switches of a process, read from /proc, main thread and other threads apart.

In a service the main thread runs Python (the loop, handlers, serialization);
the other threads are librdkafka's (its main thread and one per broker
connection), which do the network work. Telling them apart says whether a cost
is ours or the client library's. For a JVM (the broker) only the total matters.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    main_s: float = 0.0  # the process's main thread
    other_s: float = 0.0  # every other thread, live or exited
    switches: int = 0  # voluntary + involuntary context switches of the live threads (wake-ups, mostly)

    @property
    def cpu_s(self) -> float:
        return self.main_s + self.other_s

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.main_s + other.main_s, self.other_s + other.other_s, self.switches + other.switches)

    def __sub__(self, other: "Usage") -> "Usage":
        return Usage(self.main_s - other.main_s, self.other_s - other.other_s, self.switches - other.switches)


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


def usage(pid: int) -> Usage | None:
    """CPU of ``pid``'s main thread and of its other threads, and its context switches (None when gone)."""
    try:
        total = _ticks(f"/proc/{pid}/stat")  # includes threads that have exited
        main = _ticks(f"/proc/{pid}/task/{pid}/stat")
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
    return Usage(main * _TICK_S, (total - main) * _TICK_S, switches)


def rss_mb(pid: int) -> float | None:
    """Resident memory of a live process in MB (None when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
