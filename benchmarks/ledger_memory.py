"""A step's ledger alone, fed order ids at a run's rate for a soak's length: its memory over time.

    python benchmarks/ledger_memory.py [--rate 5000] [--minutes 30] [--kind generations|ordered]

``generations`` is bench's :class:`bench.flow.ledger.Ledger`; ``ordered`` is the OrderedDict it
replaced (evicting its oldest entry on every insertion, as commit 2da2cd3's did), kept here as the
baseline. Each simulated second feeds ``--rate`` ids of the run's shape, each decoded from a JSON
message as a service decodes it, and writes the ones not seen yet. Prints the process's resident
memory and its peak (VmHWM) at simulated minutes 1, 2, 3, 5, 10, 15, 20, 25, 30: a ledger whose
peak still rises after it is full grows with the run's length. Run each kind in its own process.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import OrderedDict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.flow.ledger import LEDGER_SIZE, Ledger  # noqa: E402


class OrderedLedger:
    """The baseline: one OrderedDict, its oldest entry evicted on every insertion past ``size``."""

    def __init__(self, size: int = LEDGER_SIZE) -> None:
        self._entries: OrderedDict[str, object] = OrderedDict()
        self._size = size

    def get(self, order_id: str):
        return self._entries.get(order_id)

    def put(self, order_id: str, value) -> None:
        self._entries[order_id] = value
        self._entries.move_to_end(order_id)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)


def _status_mb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) // 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--kind", choices=("generations", "ordered"), default="generations")
    args = parser.parse_args()
    ledger = Ledger() if args.kind == "generations" else OrderedLedger()
    marks = {1, 2, 3, 5, 10, 15, 20, 25, 30, args.minutes}
    per_minute = 60 * args.rate
    for minute in range(1, args.minutes + 1):
        for i in range((minute - 1) * per_minute, minute * per_minute):
            order_id = json.loads(json.dumps({"orderId": f"a1b2c3d4-{i:09d}", "t0_us": i}))["orderId"]
            if ledger.get(order_id) is None:
                ledger.put(order_id, "ok")
        if minute in marks:
            print(f"{args.kind:<12} minute {minute:>3}  rss {_status_mb('VmRSS:'):>5} MB  peak {_status_mb('VmHWM:'):>5} MB",
                  flush=True)


if __name__ == "__main__":
    main()
