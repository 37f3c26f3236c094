"""Where each bench process's memory lives, sampled while a run goes: run it beside `bench run`.

    python benchmarks/smaps.py [--every 30]

Every ``--every`` seconds, for every Python process whose command line names bench, prints its
resident size, its peak (VmHWM), its threads, and its resident memory by kind of mapping, from
/proc/<pid>/smaps:

- ``heap``: glibc's main heap (brk), where the main thread's malloc'd blocks live;
- ``arena``: glibc's other heaps (64 MB-aligned mappings), used by other threads (librdkafka's);
- ``anon``: other anonymous mappings: Python's object arenas, large blocks (numpy, big dicts);
- ``lib``: shared libraries; ``other``: the rest.

A kind that steps up at a stall and never comes down is memory a burst left pinned. Stop it with
Ctrl-C. Reading smaps costs a few milliseconds per process: keep ``--every`` long while measuring.
"""
from __future__ import annotations

import argparse
import os
import re
import time

_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")
ARENA_ALIGN = 64 << 20  # glibc's non-main heaps are HEAP_MAX_SIZE-aligned on 64-bit


def bench_processes():
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        line = b" ".join(argv)
        if len(argv) > 2 and b"python" in argv[0] and b"bench" in line and b"smaps.py" not in line:
            yield int(pid), b" ".join(argv[1:6]).decode(errors="replace")[:60]


def by_kind(pid: int) -> dict[str, int]:
    """Resident kB by kind of mapping."""
    kinds: dict[str, int] = {}
    kind = "other"
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            if _MAPPING.match(line):
                fields = line.split()
                low = int(fields[0].split("-")[0], 16)
                name = fields[5] if len(fields) > 5 else ""
                if name == "[heap]":
                    kind = "heap"
                elif not name:
                    kind = "arena" if low % ARENA_ALIGN == 0 else "anon"
                elif ".so" in name:
                    kind = "lib"
                else:
                    kind = "other"
            elif line.startswith("Rss:"):
                kinds[kind] = kinds.get(kind, 0) + int(line.split()[1])
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    every = parser.parse_args().every
    began = time.monotonic()
    while True:
        for pid, command in bench_processes():
            try:
                status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
                kinds = by_kind(pid)
            except OSError:
                continue  # it exited meanwhile
            mb = lambda key: int(status[key].split()[0]) // 1024
            print(f"{time.monotonic() - began:6.0f}s {pid} {command:60s} rss={mb('VmRSS')}M hwm={mb('VmHWM')}M "
                  f"threads={status['Threads'].strip()} "
                  + " ".join(f"{kind}={kb // 1024}M" for kind, kb in sorted(kinds.items())), flush=True)
        time.sleep(every)


if __name__ == "__main__":
    try:
        main()
    except (KeyboardInterrupt, BrokenPipeError):  # stopped, or its reader (`| head`) went away
        pass
